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


def learn(runtime, space: str, features: list[tuple[object, int]]) -> list[tuple[RecentRecognition, object]]:
    """Learn consecutive feature records of one space, as (record, offset), inside its transaction,
    together (PatternStore.learn_iter: as one by one, writes in the same order). What each emits is
    derived from its recognition and change; the recognition is kept for redeliveries and event_ids."""
    store = runtime.store
    items = [(feature.id, feature.vector, feature.ts) for feature, _ in features]
    out = []
    for (feature, offset), (learned, change) in zip(features, store.learn_iter(store.space(space), items), strict=True):
        seen = RecentRecognition(
            event_id=feature.id, pattern_id=learned.pattern_id, similarity=learned.similarity,
            confidence=learned.confidence, new=learned.new, offset=offset,
            changed=tuple((p.pattern_id, kind) for p, kind in change.events), removed=change.removed)
        out.append((seen, change))
    # Together: a ring value is written once for all of them (an interaction after them reads them).
    runtime.recent.remember(space, *(seen for seen, _ in out))
    return out


class PatternEvents:
    """A batch's fms.patterns records, with a pattern's "updated" states folded into its newest.

    fms.patterns is compacted: what a subscriber keeps of a key is its newest value. A pattern that
    many records of a batch update is announced once, in its newest state, as Kafka Streams' record
    cache forwards one record per key per commit. Only "updated" records are folded: a "created",
    "merged" (with the ids it absorbed) or "evicted" record always goes out, and an update after it
    follows it. So each key's last record, the one a compacted topic keeps, is the one the records
    applied one by one would have left, whatever the batches were.
    """

    def __init__(self) -> None:
        # key -> [(space, pattern snapshot, kind, ts, absorbed)]: records are built when sent, so
        # an update folded into a newer one costs nothing.
        self._values: dict[str, list[tuple]] = {}
        self._ended: dict[str, None] = {}  # keys to end with a tombstone, in order

    def add(self, space: str, pattern, kind: str, ts: float, absorbed: tuple[str, ...] | None = None) -> None:
        pending = self._values.setdefault(pattern_key(space, pattern.pattern_id), [])
        if pending and pending[-1][2] == "updated":
            pending[-1] = (space, pattern, kind, ts, absorbed)  # what it said, the newer state says too
        else:
            pending.append((space, pattern, kind, ts, absorbed))

    def end(self, space: str, pattern_id: str) -> None:
        self._ended[pattern_key(space, pattern_id)] = None

    def add_change(self, space: str, change, ts: float) -> None:
        """Each changed pattern's new state; an evicted or absorbed pattern ends with a tombstone."""
        for pattern, kind in change.events:
            self.add(space, pattern, kind, ts, change.absorbed_by(pattern.pattern_id) if kind == "merged" else None)
        for pattern_id in change.removed:
            self.end(space, pattern_id)

    async def send(self, emit) -> None:
        values, self._values = self._values, {}
        ended, self._ended = self._ended, {}
        for key, events in values.items():
            for event in events:
                await emit.send("patterns", key, pattern_event(*event))
        for key in ended:
            await emit.send("patterns", key, None)


async def emit_learned(runtime, feature, seen: RecentRecognition, change, patterns: PatternEvents) -> None:
    await runtime.emit.send("recognitions", feature.space, recognition_of(feature.space, seen))
    patterns.add_change(feature.space, change, feature.ts)


def recognition_of(space: str, seen: RecentRecognition) -> Recognition:
    return Recognition(event_id=seen.event_id, space=space, pattern_id=seen.pattern_id, similarity=seen.similarity,
                       confidence=seen.confidence, new=seen.new, ts=time.time())


async def emit_again(runtime, feature, patterns: PatternEvents) -> None:
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
        if pattern is None:
            patterns.end(feature.space, pattern_id)
            continue
        # The current state, so the absorbed ids are those that resolve to it now.
        absorbed = tuple(p for p in seen.removed if memory.resolve(p) == pattern_id) if kind == "merged" else None
        patterns.add(feature.space, pattern, kind, feature.ts, absorbed)
    for pattern_id in seen.removed:
        if memory.get(pattern_id) is None:
            patterns.end(feature.space, pattern_id)


def pattern_event(space: str, pattern, kind: str, ts: float, absorbed: tuple[str, ...] | None = None) -> PatternEvent:
    return PatternEvent(
        space=space, pattern_id=pattern.pattern_id, event=kind, count=pattern.count,
        confidence=pattern.confidence, centroid=pattern.centroid,
        related=tuple(Related(pattern_id=pid, similarity=sim) for pid, sim in pattern.related) or None,
        ts=ts, absorbed=absorbed or None,
    )
