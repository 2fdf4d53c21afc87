"""One pattern, what a record's learning returns, and how a pattern is valued.

Confidence, value and the eviction order are functions of a pattern and the space's event time
(:mod:`streams.core.patterns.space_memory`'s docstring, steps 5 and 7), never of the wall clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from streams.core.patterns.arithmetic import LOG2E, exp2, exp2_v, frozen_f32, log2_v
from streams.core.patterns.config import PatternConfig


_FREQ_LOG2_SCALE = 10.0  # frequency saturates at ~2**10 members
Related = tuple[tuple[str, float], ...]


@dataclass(slots=True, eq=False)
class Pattern:
    pattern_id: str
    count: int
    centroid: np.ndarray  # float32 mean of the members' unit input vectors (windowed: step 4)
    similarity_sum: float  # sum of member similarities at join time
    confidence: float  # stored, undecayed: see confidence_at
    created_ts: float
    last_ts: float
    seq: int = 0  # creation order in the space (the record count when created)
    successes: float = 0.0  # interaction feedback (apply_feedback)
    failures: float = 0.0
    related: Related = ()  # (pattern_id, similarity), similarity desc then id

    @property
    def cohesion(self) -> float:
        return self.similarity_sum / self.count if self.count > 0 else 0.0

    def to_state(self) -> dict:
        """JSON-able except ``centroid``, a float32 ndarray (the only array)."""
        return {
            "pattern_id": self.pattern_id,
            "count": int(self.count),
            "centroid": self.centroid,
            "similarity_sum": float(self.similarity_sum),
            "confidence": float(self.confidence),
            "created_ts": float(self.created_ts),
            "last_ts": float(self.last_ts),
            "seq": int(self.seq),
            "successes": float(self.successes),
            "failures": float(self.failures),
            "related": [[pid, float(s)] for pid, s in self.related],
        }

    @classmethod
    def from_state(cls, d: dict) -> Pattern:
        """Inverse of :meth:`to_state`; keys added later default (older states load)."""
        centroid = frozen_f32(d["centroid"])
        if centroid.ndim != 1 or centroid.shape[0] == 0:
            raise ValueError("centroid must be a non-empty 1-D vector")
        count = int(d["count"])
        if count < 1:
            raise ValueError("count must be >= 1")
        return cls(
            pattern_id=str(d["pattern_id"]),
            count=count,
            centroid=centroid,
            similarity_sum=float(d["similarity_sum"]),
            confidence=float(d["confidence"]),
            created_ts=float(d["created_ts"]),
            last_ts=float(d["last_ts"]),
            seq=int(d.get("seq", 0)),
            successes=float(d.get("successes", 0.0)),
            failures=float(d.get("failures", 0.0)),
            related=tuple((str(pid), float(s)) for pid, s in d.get("related", ())),
        )

    def _snapshot(self) -> Pattern:
        # Sharing the centroid is safe: it is read-only and never mutated.
        return Pattern(
            self.pattern_id,
            self.count,
            self.centroid,
            self.similarity_sum,
            self.confidence,
            self.created_ts,
            self.last_ts,
            self.seq,
            self.successes,
            self.failures,
            self.related,
        )

    def __eq__(self, other: object) -> bool:
        # Bit-exact: determinism is a promise about bits, not about closeness.
        if not isinstance(other, Pattern):
            return NotImplemented
        return (
            self.pattern_id == other.pattern_id
            and self.count == other.count
            and self.similarity_sum == other.similarity_sum
            and self.confidence == other.confidence
            and self.created_ts == other.created_ts
            and self.last_ts == other.last_ts
            and self.seq == other.seq
            and self.successes == other.successes
            and self.failures == other.failures
            and self.related == other.related
            and self.centroid.dtype == other.centroid.dtype
            and self.centroid.shape == other.centroid.shape
            and self.centroid.tobytes() == other.centroid.tobytes()
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


@dataclass(frozen=True)
class Match:
    pattern_id: str
    similarity: float
    confidence: float  # confidence_at(now)
    established: bool = False


@dataclass(frozen=True)
class Learned:
    pattern_id: str  # the live pattern that now holds the record
    similarity: float  # of the record to the pattern it joined (1.0 when it created it)
    confidence: float  # confidence_at(now) of `pattern_id`
    new: bool
    changed: tuple[Pattern, ...]  # snapshots to persist and emit; `pattern_id` first
    event: str  # "created" | "updated" | "merged", for `pattern_id`
    evicted: tuple[Pattern, ...] = ()  # final snapshots; the shell deletes and tombstones them
    merged: tuple[tuple[str, str], ...] = ()  # (survivor, absorbed); delete absorbed
    change_events: tuple[str, ...] = ()  # event of each `changed` entry, same order
    space_changed: bool = False  # persist SpaceMemory.space_state()
    # (slot, unit vector, pattern id the record went to): persist in the calibration sample
    sampled: tuple[int, np.ndarray, str] | None = None


def pattern_id_for(space: str, first_event_id: str) -> str:
    """Deterministic id of the pattern created by ``first_event_id``."""
    h = hashlib.blake2b(
        (space + "\0" + first_event_id).encode("utf-8"), digest_size=8
    )
    return "p-" + h.hexdigest()


def confidence(
    count: int,
    cohesion: float,
    cfg: PatternConfig,
    successes: float = 0.0,
    failures: float = 0.0,
) -> float:
    """Stored (undecayed) confidence, in 0..1: evidence * cohesion * reliability.

    ``evidence = 1 - e^(-(count + successes) / evidence_scale)`` saturates
    with members and successful uses (~63% at ``evidence_scale``);
    ``cohesion`` (clamped to 0..1) is the mean similarity of members to the
    pattern when they joined; ``reliability = (prior + successes) / (prior +
    successes + failures)`` is 1.0 without failures. A large loose pattern, a
    young tight one and one that keeps failing all score low.
    """
    if count <= 0:
        return 0.0
    evidence = 1.0 - exp2(-((count + successes) / cfg.evidence_scale) * LOG2E)
    prior = cfg.feedback_prior
    reliability = (prior + successes) / (prior + successes + failures)
    return evidence * min(1.0, max(0.0, cohesion)) * reliability


def pattern_confidence(p: Pattern, cfg: PatternConfig) -> float:
    return confidence(p.count, p.cohesion, cfg, p.successes, p.failures)


def confidence_at(pattern: Pattern, now: float, cfg: PatternConfig) -> float:
    """``pattern.confidence`` halved every ``decay_half_life_s`` unseen since ``last_ts``."""
    return pattern.confidence * exp2(-max(0.0, now - pattern.last_ts) / cfg.decay_half_life_s)


def is_established(pattern: Pattern, now: float, cfg: PatternConfig) -> bool:
    return confidence_at(pattern, now, cfg) >= cfg.confidence_threshold


def value_scores(conf: np.ndarray, last: np.ndarray, count: np.ndarray, now: float, cfg: PatternConfig) -> np.ndarray:
    recency = exp2_v(-np.maximum(0.0, now - last) / cfg.decay_half_life_s)
    frequency = np.minimum(1.0, log2_v(1.0 + count) / _FREQ_LOG2_SCALE)
    return (conf * recency + recency + frequency) / 3.0


def value_score(pattern: Pattern, now: float, cfg: PatternConfig) -> float:
    """``(confidence_at(now) + recency + frequency) / 3``, in 0..1: evict the lowest.

    ``recency = 2^(-age / decay_half_life_s)``; ``frequency = min(1,
    log2(1 + count) / 10)``. A fresh pattern outranks a stale one of equal
    evidence, a frequent one a rare one, an established one a weak one.
    """
    v = value_scores(
        np.array([pattern.confidence]),
        np.array([float(pattern.last_ts)]),
        np.array([float(pattern.count)]),
        float(now),
        cfg,
    )
    return float(v[0])


def eviction_order(patterns: Iterable[Pattern], now: float, cfg: PatternConfig | None = None) -> list[Pattern]:
    """Patterns from lowest to highest :func:`value_score`: evict from the front.

    Ties: less recently active first, then smallest id, so the order is total.
    """
    cfg = PatternConfig() if cfg is None else cfg
    ps = list(patterns)
    if not ps:
        return []
    v = value_scores(
        np.array([p.confidence for p in ps], dtype=np.float64),
        np.array([p.last_ts for p in ps], dtype=np.float64),
        np.array([p.count for p in ps], dtype=np.float64),
        float(now),
        cfg,
    ).tolist()
    order = sorted(range(len(ps)), key=lambda i: (v[i], ps[i].last_ts, ps[i].pattern_id))
    return [ps[i] for i in order]
