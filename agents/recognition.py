"""fms.audio-features -> pattern memory -> fms.recognitions and fms.patterns.

Decode, call the core, write state, emit: the learning is in streams.core.patterns, the limits in
streams.core.limits, the persistence in streams.state.
"""
from __future__ import annotations

import logging
import time

from agents.dead_letter import guarded, send_dead_letter
from schemas.codec import decode
from schemas.records import PatternEvent, Recognition, Related
from schemas.state import RecentRecognition
from schemas.vectors import check_dimension
from streams.state import pattern_key

log = logging.getLogger(__name__)


def register(runtime) -> None:
    topics, store, metrics, emit = runtime.topics, runtime.store, runtime.metrics, runtime.emit
    records_in = metrics.records_in.labels(topic="audio-features")

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

            def learn(feature=feature, offset=event.message.offset):
                try:
                    learned, change = store.learn(store.space(feature.space), feature.id, feature.vector, feature.ts)
                    runtime.recent.remember(feature.space, RecentRecognition(
                        event_id=feature.id, pattern_id=learned.pattern_id, similarity=learned.similarity,
                        confidence=learned.confidence, new=learned.new, offset=offset))
                except Exception:
                    store.invalidate()  # the cached index may be ahead of the tables: reload it
                    raise
                return learned, change

            started = time.perf_counter()
            applied = await guarded(runtime, event, decoded.result, "learn", learn)
            if applied is None:
                continue
            learned, change = applied
            metrics.recognition_seconds.observe(time.perf_counter() - started)

            await emit.send("recognitions", feature.space, Recognition(
                event_id=feature.id, space=feature.space, pattern_id=learned.pattern_id,
                similarity=learned.similarity, confidence=learned.confidence, new=learned.new,
                ts=time.time(),
            ))
            await emit_pattern_changes(emit, feature.space, change, feature.ts)


async def emit_pattern_changes(emit, space: str, change, ts: float) -> None:
    """Each changed pattern's new state; an evicted or absorbed pattern ends with a tombstone."""
    for pattern, kind in change.events:
        await emit.send("patterns", pattern_key(space, pattern.pattern_id), pattern_event(space, pattern, kind, ts))
    for pattern_id in change.removed:
        await emit.send("patterns", pattern_key(space, pattern_id), None)


def pattern_event(space: str, pattern, kind: str, ts: float) -> PatternEvent:
    return PatternEvent(
        space=space, pattern_id=pattern.pattern_id, event=kind, count=pattern.count,
        confidence=pattern.confidence, centroid=pattern.centroid,
        related=tuple(Related(pattern_id=pid, similarity=sim) for pid, sim in pattern.related) or None,
        ts=ts,
    )
