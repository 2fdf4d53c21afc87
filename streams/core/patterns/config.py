"""A pattern memory's settings, and the one error a caller's vector can raise."""

from __future__ import annotations

import math
from dataclasses import dataclass


class DimensionMismatch(ValueError):
    """A vector's length differs from the space's fixed dimension."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"dimension mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class PatternConfig:
    # Similarity needed to join a pattern (step 4). None: each space calibrates its own from its
    # stream (streams.core.calibration); a number pins it, as the fixed 0.6 of earlier versions did.
    match_threshold: float | None = None
    max_patterns: int = 1000  # per space (design documents' maxPatterns)
    evidence_scale: float = 5.0  # records after which evidence is ~63% saturated
    confidence_threshold: float = 0.7  # "established"
    # centring (space_memory docstring, step 2)
    centering: bool = True
    center_warmup: int = 1  # records before the first mu; plain cosine until then (step 2)
    center_refresh: int = 256  # steady-state records between mu refreshes (at least len(patterns))
    center_lift: float = 0.01  # h^2 as a fraction of the spread 1 - |mu|^2
    centroid_window: int = 64  # a centroid moves by (u - c) / min(count, centroid_window) (step 4)
    # confidence
    decay_half_life_s: float = 7 * 86400.0  # event time; inf disables decay
    feedback_prior: float = 4.0  # pseudo-successes behind the reliability factor
    # relationships and merges
    related_band: float = 0.1  # related: [match_threshold - related_band, match_threshold)
    max_related: int = 5
    merge_threshold: float = 0.95  # > 1 disables merges; one-record patterns: min(this, sqrt(match_threshold))
    max_aliases: int = 10_000
    # calibration (streams.core.calibration), when match_threshold is None
    calibration_start: float = 0.9  # until the space's first choice: strict (splits can merge later)
    calibration_sample: int = 512  # records the space keeps to choose from (first ones, then a reservoir)
    calibration_warmup: int = 256  # records before the space's full choice (at most calibration_sample)
    calibration_regroup: int = 32  # records between consolidations after it, while the sample holds every record
    calibration_interval: int = 32768  # records between later choices, over the reservoir (~10-40 ms each)
    calibration_peak_share: float = 0.8  # the finest silhouette peak within this share of the best
    calibration_clear: float = 0.6  # best silhouette that lets a space choose before its sample is full
    calibration_passes: int = 17  # orders of the sample whose consensus may consolidate the warm-up (1: stream order)
    # HDBSCAN's smallest group when the warm-up is consolidated (hdbscan.py): each size is tried, and
    # the one whose groups separate the sample better is taken (calibration.dense_groups)
    calibration_min_cluster: tuple[int, ...] = (2, 3)
    calibration_regroup_min_cluster: int = 3  # a regroup's smallest group (calibration.fine_groups)
    calibration_merge_ratio: float = 0.125  # calibrated merge threshold: 1 - ratio * (1 - t)
    calibration_band_ratio: float = 0.25  # calibrated related band: ratio * (1 - t)

    def __post_init__(self) -> None:
        if self.match_threshold is not None and not -1.0 <= self.match_threshold <= 1.0:
            raise ValueError("match_threshold must be in [-1, 1] (or None: calibrated)")
        if not -1.0 <= self.calibration_start <= 1.0:
            raise ValueError("calibration_start must be in [-1, 1]")
        if self.calibration_sample < 4 or self.calibration_interval < 1 or self.calibration_passes < 1:
            raise ValueError("calibration_sample must be >= 4, calibration_interval and calibration_passes >= 1")
        if not 4 <= self.calibration_warmup <= self.calibration_sample or self.calibration_regroup < 1:
            raise ValueError("calibration_warmup must be in [4, calibration_sample], calibration_regroup >= 1")
        if not self.calibration_min_cluster or min(self.calibration_min_cluster) < 2 \
                or self.calibration_regroup_min_cluster < 2:
            raise ValueError("calibration_min_cluster must be one or more sizes >= 2, "
                             "calibration_regroup_min_cluster >= 2")
        if not (0.0 < self.calibration_peak_share <= 1.0 and -1.0 <= self.calibration_clear <= 1.0):
            raise ValueError("calibration_peak_share must be in (0, 1] and calibration_clear in [-1, 1]")
        if not (0.0 <= self.calibration_merge_ratio <= 1.0 and 0.0 <= self.calibration_band_ratio <= 2.0):
            raise ValueError("calibration_merge_ratio must be in [0, 1] and calibration_band_ratio in [0, 2]")
        if self.max_patterns < 1:
            raise ValueError("max_patterns must be >= 1")
        if not self.evidence_scale > 0.0:
            raise ValueError("evidence_scale must be > 0")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError("confidence_threshold must be in [0, 1]")
        if self.centroid_window < 1:
            raise ValueError("centroid_window must be >= 1")
        if self.center_warmup < 1 or self.center_refresh < 1:
            raise ValueError("center_warmup and center_refresh must be >= 1")
        if not 0.0 <= self.center_lift < math.inf:
            raise ValueError("center_lift must be >= 0 and finite")
        if not self.decay_half_life_s > 0.0:
            raise ValueError("decay_half_life_s must be > 0")
        if not 0.0 < self.feedback_prior < math.inf:
            raise ValueError("feedback_prior must be > 0 and finite")
        if not 0.0 <= self.related_band <= 2.0:
            raise ValueError("related_band must be in [0, 2]")
        if self.max_related < 0 or self.max_aliases < 0:
            raise ValueError("max_related and max_aliases must be >= 0")
        if not self.merge_threshold >= -1.0:  # also rejects NaN
            raise ValueError("merge_threshold must be >= -1 (> 1 disables merges)")
