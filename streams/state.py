"""Pattern state: two changelogged RocksDB tables, and the in-process matching index built from them.

The tables are the truth; `SpaceMemory` objects are a cache that makes matching a single
matrix-vector product. Tables are read through a small Mapping protocol so this module has no
faust import and runs over a plain dict in unit tests.

  patterns  key "<space>/<pattern_id>"  -> pattern state (schemas.state)
  spaces    key "<space>"               -> SpaceState: dimension and pattern ids in creation order

Both tables are written while processing a record of the space's partition, so their changelog
partitions line up with the input topic (Kafka Streams' co-partitioning).
"""
from __future__ import annotations

from collections.abc import MutableMapping

from schemas.state import SpaceState, decode_pattern_state, encode_pattern_state
from streams.core.patterns import Learned, Pattern, PatternConfig, SpaceMemory


def pattern_key(space: str, pattern_id: str) -> str:
    return f"{space}/{pattern_id}"


class PatternStore:
    def __init__(self, patterns: MutableMapping, spaces: MutableMapping, cfg: PatternConfig) -> None:
        self._patterns = patterns
        self._spaces = spaces
        self.cfg = cfg
        self._memories: dict[str, SpaceMemory] = {}

    def invalidate(self) -> None:
        """Drop every cached index. Called on rebalance: another worker may have moved a space on."""
        self._memories.clear()

    def cached_spaces(self) -> list[str]:
        return sorted(self._memories)

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
        raw = self._spaces.get(space)
        if raw is None:
            return SpaceMemory(space, self.cfg)
        index = SpaceState.decode(raw)
        memory = SpaceMemory(space, self.cfg, dim=index.dim)
        patterns = []
        for pattern_id in index.pattern_ids:
            state = self._patterns.get(pattern_key(space, pattern_id))
            if state is not None:
                patterns.append(Pattern.from_state(decode_pattern_state(state)))
        memory.restore(patterns)
        return memory

    def save(self, memory: SpaceMemory, learned: Learned) -> None:
        """Write what `learn_one` changed. Only pattern creation and eviction rewrite the index."""
        for pattern in learned.changed:
            self._patterns[pattern_key(memory.space, pattern.pattern_id)] = encode_pattern_state(pattern.to_state())
        for pattern_id in learned.evicted:
            self._patterns.pop(pattern_key(memory.space, pattern_id), None)
        if learned.new or learned.evicted:
            self._spaces[memory.space] = SpaceState(memory.space, memory.dim, memory.pattern_ids()).encode()

    def counts(self) -> dict[str, int]:
        return {space: len(memory) for space, memory in self._memories.items()}
