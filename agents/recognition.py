"""fms.audio-features -> pattern memory -> fms.recognitions and fms.patterns.

What one feature record does to the memory and what it emits; agents.memory runs it in order with
the interactions. The learning is in streams.core.patterns, the limits in streams.core.resilience.limits, the
persistence in streams.state.
"""
from __future__ import annotations

import logging
import time

from schemas.records import PatternEvent, Recognition, Related
from schemas.state import RecentRecognition
from streams.state.patterns import pattern_key

log = logging.getLogger(__name__)


def learn(runtime, feature, offset: int) -> tuple[RecentRecognition, object]:
    """Learn one feature record inside the space's transaction; what it emits is derived from the
    returned recognition and change, and the recognition is kept for redeliveries and event_ids."""
    store = runtime.store
    learned, change = store.learn(store.space(feature.space), feature.id, feature.vector, feature.ts)
    seen = RecentRecognition(
        event_id=feature.id, pattern_id=learned.pattern_id, similarity=learned.similarity,
        confidence=learned.confidence, new=learned.new, offset=offset,
        changed=tuple((p.pattern_id, kind) for p, kind in change.events), removed=change.removed)
    runtime.recent.remember(feature.space, seen)
    return seen, change


async def emit_learned(runtime, feature, seen: RecentRecognition, change) -> None:
    await runtime.emit.send("recognitions", feature.space, recognition_of(feature.space, seen))
    await emit_pattern_changes(runtime.emit, feature.space, change, feature.ts)


def recognition_of(space: str, seen: RecentRecognition) -> Recognition:
    return Recognition(event_id=seen.event_id, space=space, pattern_id=seen.pattern_id, similarity=seen.similarity,
                       confidence=seen.confidence, new=seen.new, ts=time.time())


async def emit_again(runtime, feature) -> None:
    """A record applied before a crash, delivered again: its recognition as it was, and the current
    state (or tombstone) of every pattern it changed, in case those outputs did not get out."""
    seen = runtime.recent.get(feature.space, feature.id)
    if seen is None:  # older than the recent-recognition ring: long since committed
        log.warning("redelivered %s/%s is older than the recent recognitions; nothing to emit again",
                    feature.space, feature.id)
        return
    await runtime.emit.send("recognitions", feature.space, recognition_of(feature.space, seen))
    memory = runtime.store.space(feature.space)
    for pattern_id, kind in seen.changed:
        pattern = memory.get(pattern_id)
        # The current state, so the absorbed ids are those that resolve to it now.
        absorbed = tuple(p for p in seen.removed if memory.resolve(p) == pattern_id) if kind == "merged" else None
        await runtime.emit.send("patterns", pattern_key(feature.space, pattern_id),
                                None if pattern is None else pattern_event(feature.space, pattern, kind, feature.ts,
                                                                           absorbed))
    for pattern_id in seen.removed:
        if memory.get(pattern_id) is None:
            await runtime.emit.send("patterns", pattern_key(feature.space, pattern_id), None)


async def emit_pattern_changes(emit, space: str, change, ts: float) -> None:
    """Each changed pattern's new state; an evicted or absorbed pattern ends with a tombstone."""
    for pattern, kind in change.events:
        absorbed = change.absorbed_by(pattern.pattern_id) if kind == "merged" else None
        await emit.send("patterns", pattern_key(space, pattern.pattern_id),
                        pattern_event(space, pattern, kind, ts, absorbed))
    for pattern_id in change.removed:
        await emit.send("patterns", pattern_key(space, pattern_id), None)


def pattern_event(space: str, pattern, kind: str, ts: float, absorbed: tuple[str, ...] | None = None) -> PatternEvent:
    return PatternEvent(
        space=space, pattern_id=pattern.pattern_id, event=kind, count=pattern.count,
        confidence=pattern.confidence, centroid=pattern.centroid,
        related=tuple(Related(pattern_id=pid, similarity=sim) for pid, sim in pattern.related) or None,
        ts=ts, absorbed=absorbed or None,
    )
