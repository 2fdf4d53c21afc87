"""Optimization state in the `memory` table, and the shell around the optimization core.

Views (see streams.state for why they share one table):

  o/<space>\\x1f<pattern_id>\\x1f<model_id>  -> OptimizationState: the core's ModelPatternMemory and
                                             the recommendation last published for it
  oi/<space>                                -> OptimizationIndex: the space's memories and their
                                             newest evidence, for limits, retention and transfer

The core (streams.core.optimizations) keeps the statistics and picks recommendations; this module
loads and stores its objects, applies the per-space limit and retention, and turns a changed
recommendation into `fms.optimizations` events. What is published for a (pattern, model) is always
`recommend(...)`: the model's own best once its evidence is strong enough, before that the best
transfer from other models on the pattern and its related patterns. It is re-decided whenever that
model reports an outcome on that pattern, so a model learns what others found at its next
interaction, not before (a recommendation nobody asked about is not re-published).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from schemas.state import OptimizationIndex, OptimizationState
from streams.core.limits import Limits, check_constraints
from streams.core.optimizations import (
    DEFAULT_CONFIG,
    Event,
    ModelPatternMemory,
    OptimizationConfig,
    Recommendation,
    eviction_candidates,
    optimizations_to_evict,
    recommend,
    transition,
)

SEP = "\x1f"
# The index's evidence time is rewritten only when it moved this much: retention is measured in days.
INDEX_TS_SLACK_S = 3600.0


def memory_key(space: str, pattern_id: str, model_id: str) -> str:
    # \x1f cannot appear in a valid id, so space, pattern and model never run into each other.
    return f"{space}{SEP}{pattern_id}{SEP}{model_id}"


def _recommendation(d: Mapping[str, Any] | None) -> Recommendation | None:
    return None if d is None else Recommendation(**d)


class OptimizationStore:
    def __init__(self, memories: MutableMapping, index: MutableMapping, cfg: OptimizationConfig = DEFAULT_CONFIG,
                 observe_write: Callable[[float], None] | None = None) -> None:
        self.limits = Limits(max_optimizations=cfg.max_optimizations)
        self._memories = memories
        self._index = index
        self.cfg = cfg
        self._observe_write = observe_write
        self._counts: dict[str, int] = {}

    # -- reading
    def index(self, space: str) -> dict[tuple[str, str], float]:
        raw = self._index.get(space)
        return {} if raw is None else dict(OptimizationIndex.decode(raw).entries)

    def load(self, space: str, pattern_id: str, model_id: str) -> tuple[ModelPatternMemory, Recommendation | None]:
        raw = self._memories.get(memory_key(space, pattern_id, model_id))
        if raw is None:
            return ModelPatternMemory(space, pattern_id, model_id, self.cfg), None
        state = OptimizationState.decode(raw)
        return ModelPatternMemory.from_state(state.memory, self.cfg), _recommendation(state.published)

    def candidates(self, space: str, pattern_ids: Iterable[str], index: Mapping | None = None) -> list[ModelPatternMemory]:
        """Every model's memory of these patterns (the sources of transfer)."""
        wanted = set(pattern_ids)
        index = self.index(space) if index is None else index
        return [self.load(space, p, m)[0] for p, m in sorted(index) if p in wanted]

    def count(self, space: str) -> int:
        return len(self.index(space))

    def recommendations(self, space: str, pattern_id: str, related: Iterable[tuple[str, float]],
                        model_id: str | None = None) -> list[Recommendation]:
        """Read-only answers for /recognize: for `model_id`, what `recommend` picks now; without
        one, what is published for each model on the pattern."""
        related = list(related)
        index = self.index(space)
        if model_id is not None:
            cands = self.candidates(space, [pattern_id, *(p for p, _ in related)], index)
            if not any(m.model_id == model_id and m.pattern_id == pattern_id for m in cands):
                cands.append(ModelPatternMemory(space, pattern_id, model_id, self.cfg))
            _, published = self.load(space, pattern_id, model_id)
            rec = recommend(model_id, pattern_id, cands, related, self.cfg, space=space,
                            incumbent_key=None if published is None else published.config_key)
            return [] if rec is None else [rec]
        out = []
        for p, m in sorted(index):
            if p == pattern_id:
                published = self.load(space, p, m)[1]
                if published is not None:
                    out.append(published)
        return out

    def counts(self) -> dict[str, int]:
        """Memories per space, for the spaces this worker has applied interactions to since it
        was last assigned its partitions."""
        return dict(self._counts)

    def invalidate(self) -> None:
        self._counts.clear()

    # -- learning
    def learn(self, space: str, pattern_id: str, model_id: str, config: Mapping[str, Any], outcome: Any,
              ts: float, related: Iterable[tuple[str, float]] = ()) -> list[Event]:
        """Fold one interaction in; returns the `retired`/`recommended` events to emit, in order."""
        started = time.perf_counter()
        related = list(related)
        index = self.index(space)
        index_before = dict(index)
        target = (pattern_id, model_id)
        mem, published = self.load(space, pattern_id, model_id)
        # First, so that a config the core refuses raises before anything is written. The memory's
        # own recommended/retired events are not published: what a model is told is decided below
        # with transfer, by `recommend`.
        mem.learn_one(config, outcome, ts)
        events = self._expire(space, index, ts, keep=target)
        if target not in index:
            events += self._evict(space, index, optimizations_to_evict(len(index) + 1, self.cfg), ts, keep=target)

        check_constraints(self.limits, optimizations=len(index) + (target not in index))
        cands = [m for m in self.candidates(space, [pattern_id, *(p for p, _ in related)], index)
                 if (m.pattern_id, m.model_id) != target]
        rec = recommend(model_id, pattern_id, [*cands, mem], related, self.cfg, now=ts, space=space,
                        incumbent_key=None if published is None else published.config_key)
        events += transition(published, rec, ts)
        self._memories[memory_key(space, pattern_id, model_id)] = OptimizationState(
            mem.to_state(), None if rec is None else dataclasses.asdict(rec)).encode()

        newest = mem.last_ts if mem.last_ts is not None else ts
        if target not in index or newest > index[target] + INDEX_TS_SLACK_S:
            index[target] = newest
        if index != index_before:
            self._index[space] = OptimizationIndex(index).encode()
        self._counts[space] = len(index)
        if self._observe_write is not None:
            self._observe_write(time.perf_counter() - started)
        return events

    def _drop(self, space: str, index: dict, key: tuple[str, str], ts: float) -> list[Event]:
        _, published = self.load(space, *key)
        self._memories.pop(memory_key(space, *key), None)
        index.pop(key, None)
        return transition(published, None, ts)

    def _expire(self, space: str, index: dict, ts: float, keep: tuple[str, str]) -> list[Event]:
        """Retention in event time: memories without evidence for `retention_s` are dropped."""
        horizon = ts - self.cfg.retention_s
        events: list[Event] = []
        for key in sorted(k for k, t in index.items() if t < horizon and k != keep):
            mem, _ = self.load(space, *key)
            if mem.last_ts is not None and mem.last_ts >= horizon:
                index[key] = mem.last_ts  # the index's lower bound was stale
                continue
            events += self._drop(space, index, key, ts)
        return events

    def _evict(self, space: str, index: dict, n: int, ts: float, keep: tuple[str, str]) -> list[Event]:
        """The per-space limit: drop the `n` lowest-value memories (streams.core.optimizations, 6)."""
        if n <= 0:
            return []
        pool = [self.load(space, p, m)[0] for p, m in sorted(index) if (p, m) != keep]
        events: list[Event] = []
        for victim in eviction_candidates(pool, n, ts, self.cfg):
            events += self._drop(space, index, (victim.pattern_id, victim.model_id), ts)
        return events
