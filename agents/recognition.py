"""fms.audio-features -> pattern memory -> fms.recognitions and fms.patterns.

Decode, call the core, write state, emit: the learning itself is in streams.core.patterns.
"""
from __future__ import annotations

import time

from agents.dead_letter import send_dead_letter
from schemas.codec import decode, encode
from schemas.records import PatternEvent, Recognition
from schemas.validation import ValidationResult
from schemas.vectors import check_dimension
from streams.state import pattern_key


def register(runtime) -> None:
    topics, store, metrics = runtime.topics, runtime.store, runtime.metrics

    @runtime.app.agent(topics.audio_features, name="recognition")
    async def recognition(stream):
        async for event in stream.events():
            metrics.records_in.labels(topic="audio-features").inc()
            decoded = decode("audio-features", event.message.value, runtime.limits)
            feature = decoded.record
            if feature is None:
                await send_dead_letter(runtime, event, decoded.result)
                continue
            memory = store.space(feature.space)
            if not check_dimension(feature.vector, memory.dim, "vector", decoded.result):
                await send_dead_letter(runtime, event, decoded.result)
                continue

            started = time.perf_counter()
            try:
                learned = memory.learn_one(feature.id, feature.vector, feature.ts)
            except ValueError as exc:  # a zero vector cannot be normalized
                result = ValidationResult([], [], {})
                result.error("vector_zero", str(exc), "vector")
                await send_dead_letter(runtime, event, result)
                continue
            metrics.recognition_seconds.observe(time.perf_counter() - started)

            started = time.perf_counter()
            try:
                store.save(memory, learned)
            except Exception:
                # The cached index already moved on; make the next record reload it from the tables.
                store.invalidate()
                metrics.errors.labels(operation="state_write").inc()
                raise
            metrics.storage_seconds.labels(operation="write").observe(time.perf_counter() - started)

            await topics.recognitions.send(key=feature.space, value=encode(Recognition(
                event_id=feature.id, space=feature.space, pattern_id=learned.pattern_id,
                similarity=learned.similarity, confidence=learned.confidence, new=learned.new,
                ts=time.time(),
            )))
            metrics.records_out.labels(topic="recognitions").inc()
            for pattern in learned.changed:
                kind = "created" if learned.new and pattern.pattern_id == learned.pattern_id else "updated"
                await topics.patterns.send(
                    key=pattern_key(feature.space, pattern.pattern_id),
                    value=encode(pattern_event(feature.space, pattern, kind, feature.ts)),
                )
            for pattern_id in learned.evicted:
                await topics.patterns.send(key=pattern_key(feature.space, pattern_id), value=None)
            metrics.records_out.labels(topic="patterns").inc(len(learned.changed) + len(learned.evicted))
            metrics.patterns.set(sum(store.counts().values()))


def pattern_event(space: str, pattern, kind: str, ts: float) -> PatternEvent:
    return PatternEvent(
        space=space, pattern_id=pattern.pattern_id, event=kind, count=pattern.count,
        confidence=pattern.confidence, centroid=pattern.centroid, related=None, ts=ts,
    )
