"""The optimization memory's settings."""

from __future__ import annotations

import math
from dataclasses import dataclass


DAY = 86400.0


@dataclass(frozen=True)
class OptimizationConfig:
    # the design documents' optimizations block
    effectiveness_threshold: float = 0.5  # effectivenessThreshold
    retention_s: float = 30 * DAY  # retentionPeriod, event time
    max_optimizations: int = 500  # per space: memories of (pattern, model)
    cleanup_optimizations: int = 400  # cleanupThresholds.optimizations
    cleanup_target: float = 0.9  # a cleanup sheds toward this fraction of the threshold
    max_evictions_per_call: int = 64  # cleanup pace; the hard cap is restored at once
    # one (pattern, model)
    min_support: int = 3  # interactions before a config can be recommended
    max_configs: int = 16  # configs tracked per (pattern, model)
    max_config_bytes: int = 4096  # of a config's canonical key
    max_params: int = 256  # parameter names remembered per memory (capability rule)
    switch_margin: float = 0.02  # a challenger must beat the recommended config by more
    # scoring (module docstring, 3)
    prior_success: float = 1.0
    prior_failure: float = 1.0
    lower_z: float = 1.0  # effectiveness = posterior mean - lower_z * sd
    latency_scale_ms: float | None = 10_000.0  # None: latency is ignored
    support_scale: float = 10.0  # frequency term of eviction values
    # exploration (8)
    exploration: str = "ucb"  # or "thompson"
    ucb_z: float = 1.0  # optimistic score = posterior mean + ucb_z * sd
    exploration_scale: float = 1.0  # Thompson: multiplies the posterior sd of the draw
    # transfer (7)
    transfer_discount: float = 0.8
    own_evidence_threshold: int = 10  # target support before its own results take over
    prior_max_weight: float = 10.0  # pseudo-observations a transfer prior may add per config
    # re-announcement (10)
    reannounce_tolerance: float = 0.02  # published effectiveness moved more than this: re-announce; 1: never
    reannounce_support_factor: float = 2.0  # published support grown (or shrunk) by this factor: re-announce; 0: never

    def __post_init__(self) -> None:
        if not 0.0 <= self.effectiveness_threshold <= 1.0:
            raise ValueError("effectiveness_threshold must be in [0, 1]")
        if not 0.0 < self.retention_s < math.inf:
            raise ValueError("retention_s must be > 0 and finite")
        if self.max_optimizations < 1 or not 1 <= self.cleanup_optimizations <= self.max_optimizations:
            raise ValueError("need 1 <= cleanup_optimizations <= max_optimizations")
        if not 0.0 < self.cleanup_target <= 1.0:
            raise ValueError("cleanup_target must be in (0, 1]")
        if self.max_evictions_per_call < 1:
            raise ValueError("max_evictions_per_call must be >= 1")
        if self.min_support < 1 or self.max_configs < 1 or self.max_config_bytes < 2 or self.max_params < 0:
            raise ValueError("min_support, max_configs >= 1, max_config_bytes >= 2, max_params >= 0")
        if not 0.0 <= self.switch_margin <= 1.0:
            raise ValueError("switch_margin must be in [0, 1]")
        if not (0.0 < self.prior_success < math.inf and 0.0 < self.prior_failure < math.inf):
            raise ValueError("prior_success and prior_failure must be > 0 and finite")
        if not 0.0 <= self.lower_z < math.inf:
            raise ValueError("lower_z must be >= 0 and finite")
        if self.latency_scale_ms is not None and not 0.0 < self.latency_scale_ms < math.inf:
            raise ValueError("latency_scale_ms must be > 0 and finite, or None")
        if not 0.0 < self.support_scale < math.inf:
            raise ValueError("support_scale must be > 0 and finite")
        if self.exploration not in ("thompson", "ucb"):
            raise ValueError('exploration must be "thompson" or "ucb"')
        if not 0.0 < self.exploration_scale < math.inf:
            raise ValueError("exploration_scale must be > 0 and finite")
        if not 0.0 <= self.ucb_z < math.inf:
            raise ValueError("ucb_z must be >= 0 and finite")
        if not 0.0 <= self.transfer_discount <= 1.0:
            raise ValueError("transfer_discount must be in [0, 1]")
        if self.own_evidence_threshold < 0:
            raise ValueError("own_evidence_threshold must be >= 0")
        if not 0.0 <= self.prior_max_weight < math.inf:
            raise ValueError("prior_max_weight must be >= 0 and finite")
        if not 0.0 <= self.reannounce_tolerance <= 1.0:
            raise ValueError("reannounce_tolerance must be in [0, 1]")
        if not (self.reannounce_support_factor == 0.0 or 1.0 < self.reannounce_support_factor < math.inf):
            raise ValueError("reannounce_support_factor must be 0 (off) or > 1 and finite")


DEFAULT_CONFIG = OptimizationConfig()
