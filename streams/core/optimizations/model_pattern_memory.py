"""The optimization memory of one (space, pattern, model): the learner, and how memories are
ranked for the per-space limit (package docstring, 4 to 6).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from streams.core.optimizations.config import DEFAULT_CONFIG, OptimizationConfig
from streams.core.optimizations.config_stats import (
    ConfigStats,
    Prior,
    config_value,
    effectiveness,
    exploration_draw,
    frequency_of,
    parse_outcome,
    recency_of,
    score_for_exploration,
)
from streams.core.optimizations.identity import canonical_config, config_key, key_of_canonical
from streams.core.optimizations.recommendation import Event, RECOMMENDED, RETIRED, Recommendation


_STATE_VERSION = 1


class ModelPatternMemory:
    """Config statistics and the published recommendation of one (space, pattern, model)."""

    __slots__ = ("space", "pattern_id", "model_id", "cfg", "_stats", "_current", "_now", "_n", "_params")

    def __init__(self, space: str, pattern_id: str, model_id: str, cfg: OptimizationConfig = DEFAULT_CONFIG):
        self.space = space
        self.pattern_id = pattern_id
        self.model_id = model_id
        self.cfg = cfg
        self._stats: dict[str, ConfigStats] = {}
        self._current: str | None = None
        self._now: float | None = None
        self._n = 0  # interactions ever learned (seeds exploration draws)
        self._params: set[str] = set()

    # -- reading
    @property
    def now(self) -> float | None:
        return self._now

    @property
    def n(self) -> int:
        return self._n

    @property
    def support(self) -> int:
        """Interactions behind the configs held now."""
        return sum(s.support for s in self._stats.values())

    @property
    def last_ts(self) -> float | None:
        return max((s.last_ts for s in self._stats.values()), default=None)

    @property
    def params(self) -> frozenset[str]:
        """The config keys this model has sent on this pattern (the first ``max_params``)."""
        return frozenset(self._params)

    @property
    def current_key(self) -> str | None:
        return self._current

    def __len__(self) -> int:
        return len(self._stats)

    def stats(self) -> list[ConfigStats]:
        return [self._stats[k] for k in sorted(self._stats)]

    def get(self, config: Mapping[str, Any] | str) -> ConfigStats | None:
        return self._stats.get(config if isinstance(config, str) else config_key(config))

    def effectiveness_of(self, config: Mapping[str, Any] | str) -> float:
        return effectiveness(self.get(config), self.cfg)

    def eligible(self, now: float | None = None) -> list[ConfigStats]:
        """Configs with ``support >= min_support`` and unexpired evidence at ``now``, key order."""
        horizon = self._horizon(now)
        return [s for s in self.stats() if s.support >= self.cfg.min_support and s.last_ts >= horizon]

    def best(self, now: float | None = None) -> ConfigStats | None:
        """The eligible config of highest effectiveness (ties: smallest key), whatever its score."""
        best, best_e = None, -1.0
        for s in self.eligible(now):
            e = effectiveness(s, self.cfg)
            if e > best_e:
                best, best_e = s, e
        return best

    def predict_one(self) -> Recommendation | None:
        """The published recommendation with its current effectiveness and support."""
        if self._current is None:
            return None
        return self._recommendation(self._stats[self._current])

    def _recommendation(self, s: ConfigStats, eff: float | None = None) -> Recommendation:
        return Recommendation(self.space, self.pattern_id, self.model_id, dict(s.config), s.key,
                              effectiveness(s, self.cfg) if eff is None else eff, s.support,
                              self.model_id, self.pattern_id)

    def _horizon(self, now: float | None) -> float:
        t = self._now if now is None else (now if self._now is None else max(now, self._now))
        return -math.inf if t is None else t - self.cfg.retention_s

    # -- learning
    def learn_one(self, config: Mapping[str, Any], outcome: Any, ts: float) -> list[Event]:
        """Fold one interaction in; returns the ``retired``/``recommended`` events it causes."""
        ts = float(ts)
        if not math.isfinite(ts):
            raise ValueError("ts must be finite")
        o = parse_outcome(outcome)
        canon = canonical_config(config)
        key = key_of_canonical(canon)
        if len(key.encode()) > self.cfg.max_config_bytes:
            raise ValueError(f"config is larger than max_config_bytes={self.cfg.max_config_bytes}")
        now = ts if self._now is None else max(self._now, ts)
        if ts < now - self.cfg.retention_s:
            return []  # already expired
        self._now = now
        self._n += 1
        if len(self._params) < self.cfg.max_params:
            for name in canon:  # sorted: the same names are kept on every replay
                if name not in self._params and len(self._params) < self.cfg.max_params:
                    self._params.add(name)
        removed = self._expire_stats()
        s = self._stats.get(key)
        if s is None:
            if len(self._stats) >= self.cfg.max_configs:
                removed.update(self._evict_configs(len(self._stats) - self.cfg.max_configs + 1))
            s = ConfigStats(config=canon, key=key, first_ts=ts, last_ts=ts)
            self._stats[key] = s
        s.learn(o, ts)
        return self._refresh(ts, removed)

    def expire(self, now: float) -> list[Event]:
        """Advance the event clock to ``now`` and drop configs older than the retention period."""
        now = float(now)
        if not math.isfinite(now):
            raise ValueError("now must be finite")
        self._now = now if self._now is None else max(self._now, now)
        return self._refresh(self._now, self._expire_stats())

    def drop(self, ts: float) -> list[Event]:
        """Forget everything (the shell evicts this memory); retires the recommendation if any."""
        removed = dict(self._stats)
        self._stats.clear()
        return self._refresh(float(ts), removed)

    def _expire_stats(self) -> dict[str, ConfigStats]:
        horizon = self._horizon(None)
        old = [k for k, s in self._stats.items() if s.last_ts < horizon]
        return {k: self._stats.pop(k) for k in sorted(old)}

    def _evict_configs(self, k: int) -> dict[str, ConfigStats]:
        now = self._now if self._now is not None else 0.0
        pool = [s for s in self.stats() if s.key != self._current or self.cfg.max_configs == 1]
        pool.sort(key=lambda s: (config_value(s, now, self.cfg), s.last_ts, s.key))
        return {s.key: self._stats.pop(s.key) for s in pool[:k]}

    def _refresh(self, ts: float, removed: Mapping[str, ConfigStats]) -> list[Event]:
        cfg = self.cfg
        events: list[Event] = []
        best = self.best()
        best_e = effectiveness(best, cfg) if best is not None else -1.0
        if self._current is not None:
            key = self._current
            s = self._stats.get(key)
            gone = s is None
            if gone:
                s = removed[key]
            e = effectiveness(s, cfg)
            beaten = best is not None and best.key != key and best_e > e + cfg.switch_margin
            if gone or e < cfg.effectiveness_threshold or beaten:
                events.append(self._recommendation(s, e).event(RETIRED, ts))
                self._current = None
        if self._current is None and best is not None and best_e >= cfg.effectiveness_threshold:
            self._current = best.key
            events.append(self._recommendation(best, best_e).event(RECOMMENDED, ts))
        return events

    # -- exploration
    def suggest(
        self, options: Iterable[Mapping[str, Any]] = (), priors: Iterable[Prior] = (), salt: str = ""
    ) -> dict | None:
        """The config to run next: Thompson sampling (or UCB) over known configs, ``options`` and
        ``priors`` (from :func:`transfer_priors`); ``None`` when there is nothing to choose from."""
        cfg = self.cfg
        cands: dict[str, dict] = {k: s.config for k, s in self._stats.items()}
        for o in options:
            canon = canonical_config(o)
            cands.setdefault(key_of_canonical(canon), canon)
        prior_ab: dict[str, list[float]] = {}
        for p in priors:
            cands.setdefault(p.config_key, p.config)
            acc = prior_ab.setdefault(p.config_key, [0.0, 0.0, 0.0, 0.0])  # a, b, latency*w, w
            acc[0] += p.alpha
            acc[1] += p.beta
            if p.latency_ms is not None:
                w = p.alpha + p.beta
                acc[2] += p.latency_ms * w
                acc[3] += w
        if not cands:
            return None
        seed = f"{self.space}\x1f{self.pattern_id}\x1f{self.model_id}\x1f{self._n}\x1f{salt}"
        best_key, best_score = None, -1.0
        for key in sorted(cands):
            pa, pb, lw, w = prior_ab.get(key, (0.0, 0.0, 0.0, 0.0))
            tot = pa + pb
            if tot > cfg.prior_max_weight:
                scale = cfg.prior_max_weight / tot
                pa, pb = pa * scale, pb * scale
            lat = lw / w if w > 0.0 else None
            draw = exploration_draw(seed, key) * cfg.exploration_scale if cfg.exploration == "thompson" else None
            score = score_for_exploration(self._stats.get(key), cfg, draw, (pa, pb), lat)
            if score > best_score:
                best_key, best_score = key, score
        return dict(cands[best_key])

    # -- persistence
    def to_state(self) -> dict:
        return {
            "v": _STATE_VERSION,
            "space": self.space,
            "pattern_id": self.pattern_id,
            "model_id": self.model_id,
            "n": self._n,
            "now": self._now,
            "current": self._current,
            "params": sorted(self._params),
            "configs": [s.to_state() for s in self.stats()],
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any], cfg: OptimizationConfig = DEFAULT_CONFIG) -> ModelPatternMemory:
        if d.get("v") != _STATE_VERSION:
            raise ValueError(f"unsupported optimization state version {d.get('v')!r}")
        m = cls(d["space"], d["pattern_id"], d["model_id"], cfg)
        m._n = int(d["n"])
        m._now = None if d["now"] is None else float(d["now"])
        m._params = set(d["params"])
        for sd in d["configs"]:
            s = ConfigStats.from_state(sd)
            m._stats[s.key] = s
        cur = d["current"]
        m._current = cur if cur in m._stats else None
        return m

    def __repr__(self) -> str:
        return (f"ModelPatternMemory({self.space!r}, {self.pattern_id!r}, {self.model_id!r}, "
                f"configs={len(self._stats)}, support={self.support}, current={self._current!r})")


def memory_value(mem: ModelPatternMemory, now: float, cfg: OptimizationConfig | None = None) -> float:
    """``(best effectiveness + recency + frequency) / 3`` of a whole memory (package docstring, 6)."""
    cfg = cfg or mem.cfg
    best = mem.best(now)
    eff = effectiveness(best, cfg) if best is not None else 0.0
    last = mem.last_ts
    rec = 0.0 if last is None else recency_of(last, now, cfg)
    return (eff + rec + frequency_of(mem.support, cfg)) / 3.0


def eviction_candidates(
    memories: Iterable[ModelPatternMemory], k: int, now: float, cfg: OptimizationConfig | None = None
) -> list[ModelPatternMemory]:
    """The ``k`` lowest-value memories, lowest first (ties: older evidence, then pattern, model)."""
    if k <= 0:
        return []
    ranked = sorted(
        memories,
        key=lambda m: (memory_value(m, now, cfg), -math.inf if m.last_ts is None else m.last_ts,
                       m.pattern_id, m.model_id),
    )
    return ranked[:k]


def optimizations_to_evict(count: int, cfg: OptimizationConfig = DEFAULT_CONFIG) -> int:
    """How many memories a space holding ``count`` should shed now (package docstring, 6)."""
    hard = max(0, count - cfg.max_optimizations)
    if count <= cfg.cleanup_optimizations:
        return hard
    target = math.floor(cfg.cleanup_optimizations * cfg.cleanup_target)
    return max(hard, min(count - target, cfg.max_evictions_per_call))
