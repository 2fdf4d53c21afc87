"""Optimization state in the `memory` table, and the shell around the optimization core.

Views (see streams.state.patterns for why they share one table):

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
interaction, not before (a recommendation nobody asked about is not published).

A published recommendation is also re-decided when the memory it was transferred from changes: an
interaction of the source (pattern, model), or the source's removal (retention, the space limit).
Each memory's state lists its dependents, the memories whose published recommendation names it as
source; the list is written when a dependent attaches and pruned when an entry is found stale, so
the cost of an interaction grows with the number of its memory's dependents, not with the space.
Every re-decision goes through `transition`, which re-announces the same config when its numbers
moved past the tolerance (streams.core.optimizations, 10): the `published` stored for a key is
what was last announced on its topic key, so the topic's last record per key stays the memory's
current view of that recommendation to within the tolerance. Dependents on other patterns need the
related patterns of their own pattern: `learn(related_of=...)`; without it they wait for their
own next interaction.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from schemas.state import OptimizationIndex, OptimizationState
from streams.core.resilience.limits import Limits, check_constraints
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
              ts: float, related: Iterable[tuple[str, float]] = (),
              related_of: Callable[[str], Iterable[tuple[str, float]] | None] | None = None) -> list[Event]:
        """Fold one interaction in; returns the `retired`/`recommended` events to emit, in order: those
        of memories dropped by retention or the space limit, the target's, then its dependents' in key
        order. `related`: the related patterns of `pattern_id`; `related_of(p)`: those of another
        pattern `p` (None or empty when it has none or is gone), for dependents on other patterns."""
        started = time.perf_counter()
        related = list(related)
        index = self.index(space)
        index_before = dict(index)
        target = (pattern_id, model_id)
        session = _Session(self, space, index)
        own = session.entry(target, create=True)
        mem = own.memory()
        # First, so that a config the core refuses raises before anything is written. The memory's
        # own recommended/retired events are not published: what a model is told is decided below
        # with transfer, by `recommend`.
        mem.learn_one(config, outcome, ts)
        own.learned = True
        moved = {target}  # memories whose change re-decides their dependents
        events = self._expire(session, index, ts, keep=target, moved=moved)
        if target not in index:
            events += self._evict(session, index, optimizations_to_evict(len(index) + 1, self.cfg), ts,
                                  keep=target, moved=moved)

        check_constraints(self.limits, optimizations=len(index) + (target not in index))
        rec = self._decide(session, target, related, ts, own.published)
        events += self._publish(session, target, rec, ts)
        events += self._redecide_dependents(session, moved, target, related, related_of, ts)

        newest = mem.last_ts if mem.last_ts is not None else ts
        if target not in index or newest > index[target] + INDEX_TS_SLACK_S:
            index[target] = newest
        session.flush()
        if index != index_before:
            self._index[space] = OptimizationIndex(index).encode()
        self._counts[space] = len(index)
        if self._observe_write is not None:
            self._observe_write(time.perf_counter() - started)
        return events

    def _decide(self, session: _Session, key: tuple[str, str], related: list, ts: float,
                published: Recommendation | None) -> Recommendation | None:
        pattern_id, model_id = key
        cands = session.candidates([pattern_id, *(p for p, _ in related)], include=key)
        return recommend(model_id, pattern_id, cands, related, self.cfg, now=ts, space=session.space,
                         incumbent_key=None if published is None else published.config_key)

    def _publish(self, session: _Session, key: tuple[str, str], rec: Recommendation | None,
                 ts: float) -> list[Event]:
        """The events from what `key` last announced to `rec`; on any, `rec` becomes what is
        announced, and a transferred one is listed among its source's dependents."""
        entry = session.entry(key)
        events = transition(entry.published, rec, ts, self.cfg)
        if events:
            entry.published = rec
            entry.dirty = True
            source = _source(rec)
            if source is not None and source != key:
                src = session.entry(source)
                if src is not None and key not in src.dependents:
                    src.dependents.add(key)
                    src.dirty = True
        return events

    def _redecide_dependents(self, session: _Session, moved: set, target: tuple[str, str], related: list,
                             related_of, ts: float) -> list[Event]:
        """Re-decide the published recommendations transferred from a memory that changed (the
        target) or was dropped, each once, in key order."""
        pending = set(session.dependents_of_moved)
        own = session.entry(target)
        pending |= own.dependents
        events: list[Event] = []
        for key in sorted(pending - {target}):
            entry = session.entry(key)
            source = None if entry is None else _source(entry.published)
            if source not in moved:  # a stale entry (the dependent moved on, or is gone)
                if key in own.dependents:
                    own.dependents.discard(key)
                    own.dirty = True
                continue
            if key[0] == target[0]:
                rel = related
            elif related_of is not None:
                rel = list(related_of(key[0]) or ())
            else:
                continue  # its own pattern's related patterns are unknown here: it waits
            rec = self._decide(session, key, rel, ts, entry.published)
            events += self._publish(session, key, rec, ts)
            if _source(entry.published) != target and key in own.dependents:
                own.dependents.discard(key)
                own.dirty = True
        return events

    def _drop(self, session: _Session, index: dict, key: tuple[str, str], ts: float, moved: set) -> list[Event]:
        entry = session.entry(key)
        published = None if entry is None else entry.published
        if entry is not None:
            session.dependents_of_moved |= entry.dependents
        session.drop(key)
        index.pop(key, None)
        moved.add(key)
        return transition(published, None, ts, self.cfg)

    def _expire(self, session: _Session, index: dict, ts: float, keep: tuple[str, str], moved: set) -> list[Event]:
        """Retention in event time: memories without evidence for `retention_s` are dropped."""
        horizon = ts - self.cfg.retention_s
        events: list[Event] = []
        for key in sorted(k for k, t in index.items() if t < horizon and k != keep):
            entry = session.entry(key)
            mem = None if entry is None else entry.memory()
            if mem is not None and mem.last_ts is not None and mem.last_ts >= horizon:
                index[key] = mem.last_ts  # the index's lower bound was stale
                continue
            events += self._drop(session, index, key, ts, moved)
        return events

    def _evict(self, session: _Session, index: dict, n: int, ts: float, keep: tuple[str, str],
               moved: set) -> list[Event]:
        """The per-space limit: drop the `n` lowest-value memories (streams.core.optimizations, 6)."""
        if n <= 0:
            return []
        pool = [e.memory() for e in (session.entry(k) for k in sorted(index) if k != keep) if e is not None]
        events: list[Event] = []
        for victim in eviction_candidates(pool, n, ts, self.cfg):
            events += self._drop(session, index, (victim.pattern_id, victim.model_id), ts, moved)
        return events


def _source(rec: Recommendation | None) -> tuple[str, str] | None:
    return None if rec is None else (rec.source_pattern_id, rec.source_model_id)


class _Entry:
    """One memory's state as one `learn` call sees and changes it."""

    __slots__ = ("key", "memory_state", "mem", "published", "dependents", "learned", "dirty", "cfg", "space")

    def __init__(self, space: str, key: tuple[str, str], cfg: OptimizationConfig, state: OptimizationState | None):
        self.space, self.key, self.cfg = space, key, cfg
        self.memory_state = None if state is None else state.memory
        self.mem: ModelPatternMemory | None = None
        self.published = None if state is None else _recommendation(state.published)
        self.dependents: set[tuple[str, str]] = set() if state is None else set(state.dependents)
        self.learned = False  # the memory itself changed (the target of the call)
        self.dirty = False

    def memory(self) -> ModelPatternMemory:
        if self.mem is None:
            self.mem = (ModelPatternMemory(self.space, *self.key, self.cfg) if self.memory_state is None
                        else ModelPatternMemory.from_state(self.memory_state, self.cfg))
        return self.mem

    def encode(self) -> bytes:
        memory = self.memory().to_state() if self.learned else self.memory_state
        return OptimizationState(memory, None if self.published is None else dataclasses.asdict(self.published),
                                 tuple(sorted(self.dependents))).encode()


class _Session:
    """The memories one `learn` call reads and writes: each loaded once, written once at the end
    (in key order), so that a memory changed in several roles is written with all its changes."""

    def __init__(self, store: OptimizationStore, space: str, index: dict):
        self.store, self.space, self.index = store, space, index
        self.entries: dict[tuple[str, str], _Entry | None] = {}
        self.dropped: set[tuple[str, str]] = set()
        self.dependents_of_moved: set[tuple[str, str]] = set()

    def entry(self, key: tuple[str, str], create: bool = False) -> _Entry | None:
        if key in self.dropped:
            return None
        e = self.entries.get(key)
        if e is None:
            raw = self.store._memories.get(memory_key(self.space, *key))
            if raw is None and not create:
                return None
            e = _Entry(self.space, key, self.store.cfg, None if raw is None else OptimizationState.decode(raw))
            self.entries[key] = e
        return e

    def candidates(self, pattern_ids: Iterable[str], include: tuple[str, str]) -> list[ModelPatternMemory]:
        wanted = set(pattern_ids)
        keys = {k for k in self.index if k[0] in wanted} | {include}
        return [e.memory() for e in (self.entry(k, create=k == include) for k in sorted(keys)) if e is not None]

    def drop(self, key: tuple[str, str]) -> None:
        self.entries.pop(key, None)
        self.dropped.add(key)
        self.store._memories.pop(memory_key(self.space, *key), None)

    def flush(self) -> None:
        for key in sorted(self.entries):
            e = self.entries[key]
            if e is not None and (e.dirty or e.learned):
                self.store._memories[memory_key(self.space, *key)] = e.encode()
