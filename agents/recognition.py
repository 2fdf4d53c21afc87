"""fms.audio-features -> pattern memory -> fms.recognitions and fms.patterns.

Decode, call the core, write state, emit: the learning itself is in streams.core.patterns.
"""
from __future__ import annotations

import time

from agents.dead_letter import send_dead_letter
from schemas.codec import decode
from schemas.records import PatternEvent, Recognition
from schemas.validation import ValidationResult
from schemas.vectors import check_dimension
from streams.state import pattern_key


def register(runtime) -> None:
    topics, store, metrics, emit = runtime.topics, runtime.store, runtime.metrics, runtime.emit
    records_in = metrics.records_in.labels(topic="audio-features")
    state_writes = metrics.storage_seconds.labels(operation="write")

    @runtime.app.agent(topics.audio_features, name="recognition")
    async def recognition(stream):
        async for event in stream.events():
            records_in.inc()
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
            learned = memory.learn_one(feature.id, feature.vector, feature.ts)
            metrics.recognition_seconds.observe(time.perf_counter() - started)

            started = time.perf_counter()
            try:
                store.save(memory, learned)
            except Exception:
                # The cached index already moved on; make the next record reload it from the tables.
                store.invalidate()
                metrics.errors.labels(operation="state_write").inc()
                raise
            state_writes.observe(time.perf_counter() - started)

            await emit.send("recognitions", feature.space, Recognition(
                event_id=feature.id, space=feature.space, pattern_id=learned.pattern_id,
                similarity=learned.similarity, confidence=learned.confidence, new=learned.new,
                ts=time.time(),
            ))
            for pattern in learned.changed:
                kind = "created" if learned.new and pattern.pattern_id == learned.pattern_id else "updated"
                await emit.send("patterns", pattern_key(feature.space, pattern.pattern_id),
                                pattern_event(feature.space, pattern, kind, feature.ts))
            for pattern_id in learned.evicted:
                await emit.send("patterns", pattern_key(feature.space, pattern_id), None)
            metrics.patterns.set(sum(store.counts().values()))


def pattern_event(space: str, pattern, kind: str, ts: float) -> PatternEvent:
    return PatternEvent(
        space=space, pattern_id=pattern.pattern_id, event=kind, count=pattern.count,
        confidence=pattern.confidence, centroid=pattern.centroid, related=None, ts=ts,
    )
