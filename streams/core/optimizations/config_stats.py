"""What one config's outcomes say: its statistics, effectiveness, exploration score and value
(package docstring, 2, 3, 6, 8 and 9).
"""

from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

from streams.core.optimizations.config import DEFAULT_CONFIG, OptimizationConfig
from streams.core.optimizations.identity import canonical_config, key_of_canonical


@dataclass(frozen=True, slots=True)
class Outcome:
    success: bool
    latency_ms: float | None
    quality: float | None


def parse_outcome(outcome: Any) -> Outcome:
    """Reads a wire outcome dict or an object with ``success``/``latency_ms``/``quality``."""
    if isinstance(outcome, Mapping):
        success, lat, q = outcome.get("success"), outcome.get("latency_ms"), outcome.get("quality")
    else:
        success = getattr(outcome, "success", None)
        lat, q = getattr(outcome, "latency_ms", None), getattr(outcome, "quality", None)
    if not isinstance(success, bool):
        raise ValueError("outcome.success must be a bool")
    if lat is not None:
        if isinstance(lat, bool) or not isinstance(lat, numbers.Real):
            raise ValueError("outcome.latency_ms must be a number")
        lat = float(lat)
        if not 0.0 <= lat < math.inf:
            raise ValueError("outcome.latency_ms must be >= 0 and finite")
    if q is not None:
        if isinstance(q, bool) or not isinstance(q, numbers.Real):
            raise ValueError("outcome.quality must be a number")
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError("outcome.quality must be in [0, 1]")
    return Outcome(success, lat, q)


def pattern_feedback(outcome: Any) -> tuple[bool, float | None]:
    """What the shell passes to ``SpaceMemory.apply_feedback``: ``(success, quality or None)``.

    ``apply_feedback`` scores it ``y = (quality or 1.0) if success else 0.0``, the same ``y`` the
    optimization posterior uses. Latency describes the config, not the context: not fed back.
    """
    o = parse_outcome(outcome)
    return o.success, o.quality


@dataclass(slots=True)
class ConfigStats:
    """Evidence about one config of one (space, pattern, model)."""

    config: dict[str, str | int | float | bool]
    key: str
    successes: int = 0
    failures: int = 0
    value: float = 0.0  # sum of y = (quality or 1) if success else 0
    quality_sum: float = 0.0
    quality_n: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0

    @classmethod
    def new(cls, config: Mapping[str, Any], ts: float = 0.0) -> ConfigStats:
        canon = canonical_config(config)
        return cls(config=canon, key=key_of_canonical(canon), first_ts=float(ts), last_ts=float(ts))

    @property
    def support(self) -> int:
        return self.successes + self.failures

    @property
    def mean_quality(self) -> float | None:
        return self.quality_sum / self.quality_n if self.quality_n else None

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_sum / self.latency_n if self.latency_n else None

    def learn(self, outcome: Any, ts: float) -> None:
        o = outcome if isinstance(outcome, Outcome) else parse_outcome(outcome)
        ts = float(ts)
        if o.success:
            self.successes += 1
            self.value += 1.0 if o.quality is None else o.quality
        else:
            self.failures += 1
        if o.quality is not None:
            self.quality_sum += o.quality
            self.quality_n += 1
        if o.latency_ms is not None:
            self.latency_sum += o.latency_ms
            self.latency_n += 1
        if self.support == 1:
            self.first_ts = self.last_ts = ts
        else:
            self.first_ts = min(self.first_ts, ts)
            self.last_ts = max(self.last_ts, ts)

    def to_state(self) -> dict:
        return {
            "config": dict(self.config),
            "s": self.successes,
            "f": self.failures,
            "y": self.value,
            "qs": self.quality_sum,
            "qn": self.quality_n,
            "ls": self.latency_sum,
            "ln": self.latency_n,
            "t0": self.first_ts,
            "t1": self.last_ts,
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> ConfigStats:
        canon = canonical_config(d["config"])
        return cls(
            config=canon,
            key=key_of_canonical(canon),
            successes=int(d["s"]),
            failures=int(d["f"]),
            value=float(d["y"]),
            quality_sum=float(d["qs"]),
            quality_n=int(d["qn"]),
            latency_sum=float(d["ls"]),
            latency_n=int(d["ln"]),
            first_ts=float(d["t0"]),
            last_ts=float(d["t1"]),
        )


def posterior(
    stats: ConfigStats | None, cfg: OptimizationConfig = DEFAULT_CONFIG, prior: tuple[float, float] = (0.0, 0.0)
) -> tuple[float, float]:
    """``(alpha, beta)`` of the Beta posterior over ``E[y]``, with extra pseudo-counts ``prior``."""
    a = cfg.prior_success + prior[0]
    b = cfg.prior_failure + prior[1]
    if stats is not None:
        a = a + stats.value
        b = b + (stats.support - stats.value)
    return a, b


def _moments(a: float, b: float) -> tuple[float, float]:
    t = a + b
    m = a / t
    return m, math.sqrt(max(0.0, m * (1.0 - m)) / (t + 1.0))


def latency_factor(
    stats: ConfigStats | None, cfg: OptimizationConfig = DEFAULT_CONFIG, fallback_ms: float | None = None
) -> float:
    """``S / (S + mean latency)``, ``S = latency_scale_ms``; 1.0 without latency data."""
    if cfg.latency_scale_ms is None:
        return 1.0
    mean = stats.mean_latency_ms if stats is not None else None
    if mean is None:
        mean = fallback_ms
    if mean is None:
        return 1.0
    return cfg.latency_scale_ms / (cfg.latency_scale_ms + mean)


def clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def effectiveness(stats: ConfigStats | None, cfg: OptimizationConfig = DEFAULT_CONFIG) -> float:
    """Lower credible bound of expected delivered quality, times the latency factor (package docstring, 3)."""
    m, sd = _moments(*posterior(stats, cfg))
    return clamp01(m - cfg.lower_z * sd) * latency_factor(stats, cfg)


def score_for_exploration(
    stats: ConfigStats | None,
    cfg: OptimizationConfig = DEFAULT_CONFIG,
    draw: float | None = None,
    prior: tuple[float, float] = (0.0, 0.0),
    prior_latency_ms: float | None = None,
) -> float:
    """Optimistic score: ``clamp(m + xi * sd, 0, 1) * lat`` with ``xi = draw`` (Thompson) or ``ucb_z``."""
    xi = cfg.ucb_z if draw is None else draw
    m, sd = _moments(*posterior(stats, cfg, prior))
    return clamp01(m + xi * sd) * latency_factor(stats, cfg, prior_latency_ms)


def exploration_draw(seed: str, key: str) -> float:
    """A deterministic approximately standard-normal draw (Irwin-Hall of 12 uniforms from BLAKE2b)."""
    h = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=48).digest()
    total = sum(int.from_bytes(h[i : i + 4], "little") for i in range(0, 48, 4))
    return (total + 6) / 4294967296.0 - 6.0  # each uniform is (u + 1/2) / 2^32


def recency_of(last_ts: float, now: float, cfg: OptimizationConfig) -> float:
    return max(0.0, 1.0 - max(0.0, now - last_ts) / cfg.retention_s)


def frequency_of(n: int, cfg: OptimizationConfig) -> float:
    return n / (n + cfg.support_scale)


def config_value(stats: ConfigStats, now: float, cfg: OptimizationConfig = DEFAULT_CONFIG) -> float:
    """Worth of keeping a config: ``(effectiveness + recency + frequency) / 3`` (package docstring, 6)."""
    return (effectiveness(stats, cfg) + recency_of(stats.last_ts, now, cfg) + frequency_of(stats.support, cfg)) / 3.0


@dataclass(frozen=True, slots=True)
class Prior:
    """Pseudo-observations about one config, transferred from one source memory."""

    config: dict
    config_key: str
    alpha: float
    beta: float
    latency_ms: float | None
    source_model_id: str
    source_pattern_id: str
