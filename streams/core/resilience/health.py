"""A worker's health from its resource samples, with hysteresis so that it does not flap.

Each sample is judged against the design documents' thresholds (CPU 80%, memory 85% of the
budget, error rate 0.1): within them it is healthy; above one of them degraded; above
`unhealthy_factor` times the memory or error-rate threshold (or at a memory budget of 100%)
unhealthy. CPU alone only degrades: a saturated worker is slow, not broken, and answering 503
would only move its load elsewhere. The reported status
only gets worse after `worse_after` consecutive samples at that level or worse, and only gets
better after `better_after` consecutive samples at a better level, with values below
`recover_ratio` times the thresholds: one CPU spike does not degrade the worker, and a worker
hovering at a threshold does not toggle.
"""
from __future__ import annotations

from dataclasses import dataclass

from streams.core.resilience.breaker import HealthThresholds

LEVELS = ("healthy", "degraded", "unhealthy")


@dataclass(frozen=True)
class HealthConfig(HealthThresholds):
    """The same thresholds the breaker sheds load on, plus how health steps between levels."""

    unhealthy_factor: float = 1.2
    worse_after: int = 2
    better_after: int = 3


@dataclass(frozen=True)
class Sample:
    cpu_percent: float
    memory_percent: float  # of the configured memory budget
    error_rate: float


def judge(sample: Sample, cfg: HealthConfig, scale: float = 1.0) -> tuple[str, str]:
    """The level of one sample against thresholds scaled by `scale`, and why."""
    checks = [("cpu", sample.cpu_percent, cfg.cpu_percent), ("memory", sample.memory_percent, cfg.memory_percent),
              ("error rate", sample.error_rate, cfg.error_rate)]
    level, reasons = "healthy", []
    for name, value, limit in checks:
        if name != "cpu" and (value >= 100.0 and name == "memory" or value > limit * scale * cfg.unhealthy_factor):
            level = "unhealthy"
            reasons.append(f"{name} {value:.3g} > {limit * scale * cfg.unhealthy_factor:.3g}")
        elif value > limit * scale:
            level = max(level, "degraded", key=LEVELS.index)
            reasons.append(f"{name} {value:.3g} > {limit * scale:.3g}")
    return level, "; ".join(reasons) or "within thresholds"


class HealthTracker:
    def __init__(self, cfg: HealthConfig | None = None) -> None:
        self.cfg = cfg or HealthConfig()
        self.status = "healthy"
        self.reason = "no sample yet"
        self._streak_level = "healthy"
        self._streak = 0

    def observe(self, sample: Sample) -> str:
        current = LEVELS.index(self.status)
        worse, why = judge(sample, self.cfg)
        # Recovery is judged against lowered thresholds: the hysteresis band.
        better, _ = judge(sample, self.cfg, self.cfg.recover_ratio)
        if LEVELS.index(worse) > current:
            candidate, needed = worse, self.cfg.worse_after
        elif LEVELS.index(better) < current:
            candidate, needed = better, self.cfg.better_after
        else:
            self._streak_level, self._streak = self.status, 0
            self.reason = why
            return self.status
        self._streak = self._streak + 1 if candidate == self._streak_level else 1
        self._streak_level = candidate
        if self._streak >= needed:
            self.status, self._streak = candidate, 0
        self.reason = why
        return self.status
