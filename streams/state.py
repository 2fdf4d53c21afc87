"""Pattern state: two changelogged RocksDB tables, and the in-process matching index built from them.

The tables are the truth; `SpaceMemory` objects are a cache that makes matching a single
matrix-vector product. Tables are read through a small Mapping protocol so this module has no
faust import and runs over a plain dict in unit tests.

  patterns  key "<space>/<pattern_id>"  -> pattern state (schemas.state)
  spaces    key "<space>"               -> SpaceState: pattern ids in creation order, and the core's
                                           space-level state (centring mean, merge aliases, ...)

Both tables are written while processing a record of the space's partition, so their changelog
partitions line up with the input topic (Kafka Streams' co-partitioning).
"""
from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

from schemas.state import SpaceState, decode_pattern_state, encode_pattern_state
from streams.core.limits import Limits, crossed_interval, evictions_needed
from streams.core.patterns import Learned, Pattern, PatternConfig, SpaceMemory


def pattern_key(space: str, pattern_id: str) -> str:
    return f"{space}/{pattern_id}"


@dataclass(frozen=True)
class Change:
    """What one record (or one cleanup) did to a space, for the shell to emit."""

    events: tuple[tuple[Pattern, str], ...] = ()  # (pattern, "created" | "updated" | "merged" | "evicted")
    removed: tuple[str, ...] = ()                 # pattern ids that get a tombstone


class PatternStore:
    def __init__(self, patterns: MutableMapping, spaces: MutableMapping, cfg: PatternConfig,
                 limits: Limits | None = None, observe_write: Callable[[float], None] | None = None) -> None:
        self._patterns = patterns
        self._observe_write = observe_write
        self._spaces = spaces
        self.cfg = cfg
        self.limits = limits or Limits()
        self._memories: dict[str, SpaceMemory] = {}

    def invalidate(self) -> None:
        """Drop every cached index. Called on rebalance: another worker may have moved a space on."""
        self._memories.clear()

    def space(self, space: str) -> SpaceMemory:
        memory = self._memories.get(space)
        if memory is None:
            memory = self._load(space)
            self._memories[space] = memory
        return memory

    def peek(self, space: str) -> SpaceMemory | None:
        """Read-only access that does not create an empty space."""
        if space in self._memories:
            return self._memories[space]
        if self._spaces.get(space) is None:
            return None
        return self.space(space)

    def _load(self, space: str) -> SpaceMemory:
        memory = SpaceMemory(space, self.cfg)
        raw = self._spaces.get(space)
        if raw is None:
            return memory
        index = SpaceState.decode(raw)
        patterns = []
        for pattern_id in index.pattern_ids:
            state = self._patterns.get(pattern_key(space, pattern_id))
            if state is not None:
                patterns.append(Pattern.from_state(decode_pattern_state(state)))
        memory.restore(patterns, index.core)
        return memory

    def learn(self, memory: SpaceMemory, event_id: str, vector, ts: float) -> tuple[Learned, Change]:
        """Learn one record, keep the space within its limits, and persist all of it."""
        before = memory.now
        learned = memory.learn_one(event_id, vector, ts)
        events = [(p, e) for p, e in zip(learned.changed, learned.change_events, strict=True)]
        events += [(p, "evicted") for p in learned.evicted]
        removed = [p.pattern_id for p in learned.evicted] + [absorbed for _, absorbed in learned.merged]
        cleaned = self._cleanup(memory, before)
        events += [(p, "evicted") for p in cleaned]
        removed += [p.pattern_id for p in cleaned]
        # A pattern evicted by the cleanup after this record changed it is gone: emit its end only.
        gone = set(removed)
        events = [(p, e) for p, e in events if e == "evicted" or p.pattern_id not in gone]
        # The index lists pattern ids, so a creation rewrites it too.
        self._persist(memory, [p for p, e in events if e != "evicted"], removed,
                      learned.new or learned.space_changed or bool(removed))
        return learned, Change(tuple(events), tuple(removed))

    def _cleanup(self, memory: SpaceMemory, before: float | None) -> list[Pattern]:
        n = evictions_needed(len(memory), memory.memory_estimate_bytes(), self.limits)
        evicted = memory.evict(n) if n else []
        if crossed_interval(before, memory.now, self.limits.cleanup_interval_s):
            evicted += memory.evict_stale(self.limits.stale_confidence, self.limits.max_evictions_per_record)
        return evicted

    def _persist(self, memory: SpaceMemory, changed: list[Pattern], removed: list[str], space_changed: bool) -> None:
        started = time.perf_counter()
        # Deletes first: a redelivered record may re-create an id it removed.
        for pattern_id in removed:
            self._patterns.pop(pattern_key(memory.space, pattern_id), None)
        for pattern in changed:
            self._patterns[pattern_key(memory.space, pattern.pattern_id)] = encode_pattern_state(pattern.to_state())
        if space_changed:
            self._spaces[memory.space] = SpaceState(memory.space, memory.pattern_ids(), memory.space_state()).encode()
        if self._observe_write is not None:
            self._observe_write(time.perf_counter() - started)

    def counts(self) -> dict[str, int]:
        return {space: len(memory) for space, memory in self._memories.items()}

    def memory_estimate_bytes(self) -> int:
        return sum(m.memory_estimate_bytes() for m in self._memories.values())
