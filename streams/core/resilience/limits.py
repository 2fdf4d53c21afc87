"""How many patterns a space must shed, from its size, its memory estimate and the event clock.

The design documents' limits, per space so that they depend only on that space's own input (the
same stream gives the same evictions on any worker, in any replay):

- `max_patterns` (1000): a hard cap; the pattern memory itself evicts before creating past it.
- `max_memory_bytes` (100 MB): a hard budget on the space's memory estimate.
- `cleanup_patterns` (800) and `cleanup_memory_bytes` (80 MB): crossing either starts a cleanup that
  evicts the lowest-value patterns (see `streams.core.patterns.value_score`) toward
  `cleanup_target` (90%) of the threshold it crossed. The gap between the threshold and the target
  is hysteresis: a space hovering at the threshold does not evict on every record.
- `cleanup_interval_s` (one day of event time): each time a space's event clock crosses an interval
  boundary, patterns whose decayed confidence fell below `stale_confidence` are evicted as well.

A cleanup never evicts more than `max_evictions_per_record` at once, so recognition is never held
up for long; the rest follows on the next records of that space. The hard budget is the exception:
it is restored at once.

The design documents' ResourceConstraints (maxMemoryUsage, maxPatternSize, maxOptimizationCount,
cleanupThresholds) are these limits plus the dimension limit, checked by `check_constraints` before
and after each operation. The cleanup normally keeps a space inside them; when it cannot (a budget
smaller than one pattern, a vector past the dimension limit that slipped past validation), the
operation raises `ResourceConstraintError` naming the constraint, and the record that caused it goes
to the dead-letter topic as `resource_constraint` instead of the worker growing past its budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_memory_bytes: int = 100 * 1024 * 1024
    cleanup_patterns: int = 800
    cleanup_memory_bytes: int = 80 * 1024 * 1024
    cleanup_target: float = 0.9
    cleanup_interval_s: float = 86400.0
    stale_confidence: float = 0.05
    max_evictions_per_record: int = 64
    max_pattern_size: int | None = None  # the dimension limit; None: unchecked
    max_optimizations: int | None = None  # (pattern, model) memories per space; None: unchecked

    def __post_init__(self) -> None:
        if not 0 < self.cleanup_target <= 1:
            raise ValueError("cleanup_target must be in (0, 1]")
        if self.cleanup_memory_bytes > self.max_memory_bytes:
            raise ValueError("cleanup_memory_bytes must not exceed max_memory_bytes")
        if self.max_evictions_per_record < 1 or self.cleanup_interval_s <= 0:
            raise ValueError("max_evictions_per_record and cleanup_interval_s must be positive")


class ResourceConstraintError(Exception):
    """An operation would leave a space outside a configured resource constraint."""

    def __init__(self, constraint: str, value: float, limit: float) -> None:
        super().__init__(f"{constraint} would be {value:g}, the limit is {limit:g}")
        self.constraint = constraint
        self.value = value
        self.limit = limit


def check_constraints(limits: Limits, *, dim: int | None = None, memory_bytes: int | None = None,
                      optimizations: int | None = None) -> None:
    """Raise ResourceConstraintError for the first constraint a value breaks (None: not checked)."""
    for name, value, limit in (("max_pattern_size", dim, limits.max_pattern_size),
                               ("max_memory_bytes", memory_bytes, limits.max_memory_bytes),
                               ("max_optimizations", optimizations, limits.max_optimizations)):
        if value is not None and limit is not None and value > limit:
            raise ResourceConstraintError(name, value, limit)


def evictions_needed(n_patterns: int, memory_bytes: int, limits: Limits) -> int:
    """How many of the lowest-value patterns to evict now.

    Stateless on purpose: it depends only on the space's current size, so a worker that restarts
    in the middle of a cleanup carries on exactly as one that did not.
    """
    if n_patterns == 0:
        return 0
    per_pattern = memory_bytes / n_patterns
    hard = 0
    if memory_bytes > limits.max_memory_bytes:
        hard = math.ceil((memory_bytes - limits.max_memory_bytes) / per_pattern)
    if n_patterns <= limits.cleanup_patterns and memory_bytes <= limits.cleanup_memory_bytes:
        return min(n_patterns, hard)
    target = min(
        math.floor(limits.cleanup_patterns * limits.cleanup_target),
        math.floor(limits.cleanup_memory_bytes * limits.cleanup_target / per_pattern),
    )
    soft = min(max(0, n_patterns - target), limits.max_evictions_per_record)
    return min(n_patterns, max(hard, soft))


def crossed_interval(previous_now: float | None, now: float | None, interval_s: float) -> bool:
    """True when the event clock moved into a new cleanup interval (boundaries at multiples of it)."""
    if previous_now is None or now is None:
        return False
    return math.floor(now / interval_s) > math.floor(previous_now / interval_s)
