"""fms.audio -> wav2vec2 -> fms.audio-features, in the extraction role only.

Decode (schemas validates the audio and dead-letters bad records with their codes), run the model
through the "inference" circuit breaker (streams.service.guard: while it is open the stream waits; a record
whose inference keeps failing goes to the dead-letter topic as processing_failed with the reason,
never acked and dropped), and emit one feature per window. A record is all or nothing: every feature
is built and checked before the first one is sent.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from agents.dead_letter import guarded, send_dead_letter
from schemas.codec import decode, encode
from streams.core.audio import feature_records

log = logging.getLogger(__name__)


def register(runtime) -> None:
    extractor, metrics, stage = runtime.extractor, runtime.metrics, runtime.stage_metrics
    records_in = metrics.records_in.labels(topic="audio")
    # One thread: torch already spreads one forward pass over the cores, and records of a partition
    # must stay in order. The event loop stays free for heartbeats and commits meanwhile.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    async def run_model(audio):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, extractor.extract, audio.samples(), audio.sample_rate)

    @runtime.app.agent(runtime.audio_topic, name="extraction")
    async def extraction(stream):
        async for event in stream.events():
            records_in.inc()
            decoded = decode("audio", event.message.value, runtime.limits)
            audio = decoded.record
            if audio is None:
                await send_dead_letter(runtime, event, decoded.result)
                continue
            warnings = decoded.result.warning_codes
            for issue in decoded.result.warnings:
                stage.warnings.labels(code=issue.code).inc()
                log.warning("audio %s/%s accepted with a warning: %s", audio.space, audio.id, issue.message)

            async def extract(audio=audio, warnings=warnings):
                vectors, starts = await run_model(audio)
                features = feature_records(audio, vectors, starts, window=extractor.plan.window,
                                           model_space=extractor.model_space, model_id=extractor.model_id,
                                           warnings=warnings)
                for feature in features:
                    encode(feature)  # raises on anything the contract rejects, before anything is sent
                return features

            started = time.perf_counter()
            features = await guarded(runtime, event, decoded.result, "inference", extract)
            if features is None:
                continue
            stage.inference_seconds.observe(time.perf_counter() - started)
            stage.audio_seconds.inc(audio.duration_s)

            for feature in features:
                await runtime.emit.send("audio-features", feature.space, feature)
