"""fms.audio -> wav2vec2 -> fms.audio-features, in the extraction role only.

Decode (schemas validates the audio and dead-letters bad records with their codes), run the model
behind the breaker seam, and emit one feature per window. A record is all or nothing: every feature
is built and checked before the first one is sent, and a record whose inference or checking fails
goes to the dead-letter topic as processing_failed with the reason, never acked and dropped.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from agents.dead_letter import send_dead_letter
from schemas.codec import decode, encode
from schemas.validation import PROCESSING_FAILED
from streams.core.audio import feature_records

log = logging.getLogger(__name__)


async def infer(runtime, fn, *args):
    """Run one inference call `await fn(*args)` under the project's circuit breaker.

    SEAM(breaker): when the runtime has a guard (the async circuit breaker of the breaker issue),
    inference goes through `runtime.guard.call("inference", fn, *args)`, which awaits `fn(*args)`
    while the breaker permits it. Without one, `fn` is called directly. Whatever either raises
    reaches the agent, which dead-letters the record.
    """
    guard = getattr(runtime, "guard", None)
    if guard is not None:
        return await guard.call("inference", fn, *args)
    return await fn(*args)


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

            started = time.perf_counter()
            try:
                vectors, starts = await infer(runtime, run_model, audio)
                features = feature_records(audio, vectors, starts, window=extractor.plan.window,
                                           model_space=extractor.model_space, model_id=extractor.model_id,
                                           warnings=warnings)
                for feature in features:
                    encode(feature)  # raises on anything the contract rejects, before anything is sent
            except Exception as exc:
                metrics.errors.labels(operation="inference").inc()
                log.exception("extracting %s/%s failed", audio.space, audio.id)
                decoded.result.error(PROCESSING_FAILED, f"{type(exc).__name__}: {exc}")
                await send_dead_letter(runtime, event, decoded.result)
                continue
            stage.inference_seconds.observe(time.perf_counter() - started)
            stage.audio_seconds.inc(audio.duration_s)

            for feature in features:
                await runtime.emit.send("audio-features", feature.space, feature)
