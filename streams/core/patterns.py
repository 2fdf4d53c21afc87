"""Pattern memory for one embedding space: the pure core of feature-memory.

A :class:`SpaceMemory` holds the patterns of one space (one model's feature
space, with a dimension fixed by the first vector it accepts). It is modelled
on River's estimators: small, pure, ``learn_one`` / ``predict_one``, no I/O.
The shell (a faust agent) persists every pattern in ``Learned.changed``,
deletes every id in ``Learned.evicted`` and emits the events.

Algorithm, per record ``(event_id, vector, ts)``:

1. **Prepare.** ``x = normalize(transform(vector))``. ``transform`` is the
   identity today; it is the single place where a later change will centre
   embeddings that share a large common component. Normalization is L2, and
   the result is rounded to float32 once. A zero vector is rejected.

2. **Recognize.** ``s_i = cos(x, c_i)`` against every pattern centroid
   ``c_i``. The nearest pattern wins; ties go to the earliest pattern, where
   "earliest" is the smallest ``(created_ts, pattern_id)``: the same order
   :meth:`SpaceMemory.restore` rebuilds in, so a live and a restored memory
   agree on every tie.

3. **Join or create.** If ``s_best >= match_threshold`` the record joins that
   pattern (event ``"updated"``)::

       n  = count + 1
       c += (x - c) / n                  # float32, this exact operation order
       similarity_sum += s_best          # similarity to the pre-move centroid

   so the centroid is the running mean of the normalized members. Otherwise
   a pattern is created (event ``"created"``) with ``c = x``, ``count = 1``
   and ``similarity_sum = 1.0`` (a record is perfectly similar to itself).
   If the space is full (``max_patterns``) the first pattern of
   :func:`eviction_order` is evicted before the new one is added.

4. **Confidence** (:func:`confidence`) after every join or creation::

       confidence = (1 - exp(-count / evidence_scale)) * clamp(cohesion, 0, 1)
       cohesion   = similarity_sum / count

   The first factor is evidence: 0 with no members, ~63% after
   ``evidence_scale`` members, approaching 1. The second is how tightly the
   members agreed with the pattern when they joined. Both lie in 0..1, so
   confidence does too. ``confidence >= confidence_threshold`` means
   "established".

Recognition is one float32 matrix-vector product over a contiguous matrix
of normalized centroids. BLAS may round a row's dot product differently
depending on where the row sits in the matrix (block remainders, thread
splits), and an evicted pattern's row is reused, so a restored memory does not
have the live memory's layout. The product is therefore only a screen: every
row within a rigorous float32 error bound of the best one is re-scored in
float64 from exact products, summed in a fixed pairwise order
(:func:`_fixed_sum`). Decisions and reported similarities use those
re-scored values, so they depend only on the data, never on the layout, the
BLAS build or the CPU. That is what makes restore-and-continue bit-identical
to an uninterrupted run, on this worker or on the one a rebalance moves the
partition to.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

__all__ = [
    "DimensionMismatch",
    "Learned",
    "Match",
    "Pattern",
    "PatternConfig",
    "SpaceMemory",
    "confidence",
    "eviction_order",
    "pattern_id_for",
]

_F32 = np.float32


class DimensionMismatch(ValueError):
    """A vector's length differs from the space's fixed dimension."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"dimension mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class PatternConfig:
    match_threshold: float = 0.80  # cosine similarity needed to join a pattern
    max_patterns: int = 1000  # per space (design documents' maxPatterns)
    evidence_scale: float = 5.0  # records after which evidence is ~63% saturated
    confidence_threshold: float = 0.7  # "established"

    def __post_init__(self) -> None:
        if not -1.0 <= self.match_threshold <= 1.0:
            raise ValueError("match_threshold must be in [-1, 1]")
        if self.max_patterns < 1:
            raise ValueError("max_patterns must be >= 1")
        if not self.evidence_scale > 0.0:
            raise ValueError("evidence_scale must be > 0")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError("confidence_threshold must be in [0, 1]")


def _frozen_f32(a: Any) -> np.ndarray:
    """A private, read-only float32 copy.

    Centroids are replaced, never written in place, so snapshots handed to
    the shell can share the array and stay valid while it persists them.
    """
    out = np.array(a, dtype=_F32, copy=True)
    out.flags.writeable = False
    return out


@dataclass(slots=True, eq=False)
class Pattern:
    pattern_id: str
    count: int
    centroid: np.ndarray  # float32 running mean of the prepared member vectors
    similarity_sum: float  # sum of member similarities at join time
    confidence: float
    created_ts: float
    last_ts: float

    @property
    def cohesion(self) -> float:
        return self.similarity_sum / self.count if self.count > 0 else 0.0

    def to_state(self) -> dict:
        """JSON-able except ``centroid``, which stays a float32 ndarray."""
        return {
            "pattern_id": self.pattern_id,
            "count": int(self.count),
            "centroid": self.centroid,
            "similarity_sum": float(self.similarity_sum),
            "confidence": float(self.confidence),
            "created_ts": float(self.created_ts),
            "last_ts": float(self.last_ts),
        }

    @classmethod
    def from_state(cls, d: dict) -> Pattern:
        centroid = _frozen_f32(d["centroid"])
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
            and self.centroid.dtype == other.centroid.dtype
            and self.centroid.shape == other.centroid.shape
            and self.centroid.tobytes() == other.centroid.tobytes()
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


@dataclass(frozen=True)
class Match:
    pattern_id: str
    similarity: float
    confidence: float


@dataclass(frozen=True)
class Learned:
    pattern_id: str
    similarity: float  # of the record to `pattern_id` (1.0 when it created it)
    confidence: float
    new: bool
    changed: tuple[Pattern, ...]  # snapshots to persist and emit
    event: str  # "created" | "updated", for `pattern_id`
    evicted: tuple[str, ...] = ()  # ids the shell must delete


def pattern_id_for(space: str, first_event_id: str) -> str:
    """Deterministic id of the pattern created by ``first_event_id``."""
    h = hashlib.blake2b(
        (space + "\0" + first_event_id).encode("utf-8"), digest_size=8
    )
    return "p-" + h.hexdigest()


def confidence(count: int, cohesion: float, cfg: PatternConfig) -> float:
    """``(1 - exp(-count / evidence_scale)) * clamp(cohesion, 0, 1)``, in 0..1.

    Evidence saturates with members (~63% at ``evidence_scale`` members);
    cohesion is the mean similarity of members to the pattern when they
    joined. A large, loose pattern and a tight, young one both score low.
    """
    if count <= 0:
        return 0.0
    evidence = -math.expm1(-count / cfg.evidence_scale)  # accurate for small counts
    return evidence * min(1.0, max(0.0, cohesion))


def eviction_order(patterns: Iterable[Pattern], now: float) -> list[Pattern]:
    """Patterns from lowest to highest value: evict from the front.

    Today: lowest ``(confidence, last_ts, pattern_id)`` first, so a weak
    pattern goes before a strong one, a stale one before a fresh one, and
    the id makes the order total. ``now`` is unused until a value score
    (age, decay) replaces this key.
    """
    del now
    return sorted(patterns, key=lambda p: (p.confidence, p.last_ts, p.pattern_id))


def _fixed_sum(rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Row sums of ``rows * other`` in float64, in a fixed order.

    A pairwise tree built from elementwise IEEE adds: unlike ``np.sum`` or
    BLAS, its rounding cannot depend on SIMD width, threads, library version
    or where the row sits in memory. Vectorized over rows, so re-scoring a
    handful of candidates costs about as much as one.
    """
    c, d = rows.shape
    width = 1 << (d - 1).bit_length()
    buf = np.zeros((c, width))  # zero padding adds exactly
    np.multiply(rows, other, out=buf[:, :d])
    while width > 1:
        width //= 2
        np.add(buf[:, :width], buf[:, width : 2 * width], out=buf[:, :width])
    return buf[:, 0]


def _normalize(v: np.ndarray) -> np.ndarray | None:
    """float64 vector -> float32 unit vector, or None for a zero vector.

    Scaling by the largest magnitude first keeps the squares from overflowing.
    """
    m = float(np.max(np.abs(v)))
    if m == 0.0:
        return None
    s = v / m
    norm = math.sqrt(float(_fixed_sum(s[None, :], s)[0]))
    return (s / norm).astype(_F32)


class SpaceMemory:
    """The patterns of one space, learned one record at a time."""

    _MIN_CAPACITY = 16

    def __init__(self, space: str, cfg: PatternConfig, dim: int | None = None):
        self.space = space
        self.cfg = cfg
        self._dim: int | None = None
        self._tol = 0.0
        self._patterns: dict[str, Pattern] = {}  # insertion order
        # Row r of _mat is the unit centroid of pattern _row_ids[r]; rows
        # [0, len) are live and dense (removal moves the last row into the hole).
        self._row_ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._mat = np.zeros((0, 0), dtype=_F32)
        if dim is not None:
            self._fix_dim(dim)

    # -- introspection -------------------------------------------------

    @property
    def dim(self) -> int | None:
        return self._dim

    def __len__(self) -> int:
        return len(self._patterns)

    def patterns(self) -> list[Pattern]:
        """Snapshots in insertion order (restore inserts in pattern order)."""
        return [p._snapshot() for p in self._patterns.values()]

    def pattern_ids(self) -> tuple[str, ...]:
        """Ids in the order of `patterns()`, without copying any pattern."""
        return tuple(self._patterns)

    def get(self, pattern_id: str) -> Pattern | None:
        p = self._patterns.get(pattern_id)
        return None if p is None else p._snapshot()

    # -- persistence -----------------------------------------------------

    def restore(self, patterns: Iterable[Pattern]) -> None:
        """Replace all state with persisted patterns.

        Insertion order is ``(created_ts, pattern_id)`` whatever order the
        table yields them in, so rebuilds are deterministic.
        """
        ordered = sorted(patterns, key=lambda p: (p.created_ts, p.pattern_id))
        dim = self._dim
        seen: set[str] = set()
        for p in ordered:
            if p.pattern_id in seen:
                raise ValueError(f"duplicate pattern_id {p.pattern_id!r}")
            seen.add(p.pattern_id)
            d = int(np.shape(p.centroid)[0]) if np.ndim(p.centroid) == 1 else -1
            if d < 1:
                raise ValueError("centroid must be a non-empty 1-D vector")
            if dim is None:
                dim = d
            elif d != dim:
                raise DimensionMismatch(dim, d)
        # Validated: now mutate, so a bad snapshot leaves the memory untouched.
        self._patterns = {}
        self._row_ids = []
        self._row_of = {}
        if dim is not None:
            self._fix_dim(dim)
        for p in ordered:
            self._insert(
                Pattern(
                    p.pattern_id,
                    int(p.count),
                    _frozen_f32(p.centroid),
                    float(p.similarity_sum),
                    float(p.confidence),
                    float(p.created_ts),
                    float(p.last_ts),
                )
            )

    # -- estimator -------------------------------------------------------

    def predict_one(self, vector: Any, k: int = 1) -> list[Match]:
        """The nearest ``k`` patterns, most similar first. Read-only."""
        if k < 1:
            raise ValueError("k must be >= 1")
        x32, x64 = self._prepare(vector)
        return [
            Match(pid, sim, self._patterns[pid].confidence)
            for pid, sim in self._nearest(x32, x64, k)
        ]

    def learn_one(self, event_id: str, vector: Any, ts: float) -> Learned:
        ts = float(ts)
        if not math.isfinite(ts):
            raise ValueError("ts must be finite")
        x32, x64 = self._prepare(vector)
        if self._dim is None:
            self._fix_dim(x32.shape[0])

        best = self._nearest(x32, x64, 1)
        if best and best[0][1] >= self.cfg.match_threshold:
            pid, sim = best[0]
            p = self._patterns[pid]
            p.count += 1
            p.centroid = _move_centroid(p.centroid, x32, p.count)
            p.similarity_sum += sim
            p.confidence = confidence(p.count, p.similarity_sum / p.count, self.cfg)
            # max: a late record must not make an active pattern look stale.
            p.last_ts = max(p.last_ts, ts)
            self._mat[self._row_of[pid]] = self._unit_row(p.centroid)
            return Learned(pid, sim, p.confidence, False, (p._snapshot(),), "updated")

        evicted: list[str] = []
        # A loop, not an if: a snapshot restored under a smaller max_patterns
        # shrinks back to the limit here rather than failing.
        while len(self._patterns) >= self.cfg.max_patterns:
            victim = eviction_order(self._patterns.values(), ts)[0]
            self._remove(victim.pattern_id)
            evicted.append(victim.pattern_id)

        pid = self._fresh_id(event_id)
        p = Pattern(
            pattern_id=pid,
            count=1,
            centroid=_frozen_f32(x32),
            similarity_sum=1.0,
            confidence=confidence(1, 1.0, self.cfg),
            created_ts=ts,
            last_ts=ts,
        )
        self._insert(p)
        return Learned(pid, 1.0, p.confidence, True, (p._snapshot(),), "created", tuple(evicted))

    # -- seams -----------------------------------------------------------

    def _transform(self, v: np.ndarray) -> np.ndarray:
        """Map a raw float64 vector into matching space. Identity for now.

        Centring (removing a large component shared by all embeddings of a
        space, which otherwise makes every cosine look high) belongs here.
        """
        return v

    # -- internals -------------------------------------------------------

    def _prepare(self, vector: Any) -> tuple[np.ndarray, np.ndarray]:
        v = np.asarray(vector, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"expected a 1-D vector, got shape {v.shape}")
        if self._dim is not None and v.shape[0] != self._dim:
            raise DimensionMismatch(self._dim, v.shape[0])
        if v.shape[0] == 0:
            raise ValueError("empty vector")
        x32 = _normalize(self._transform(v))
        if x32 is None:
            raise ValueError("zero vector")
        return x32, x32.astype(np.float64)

    def _fix_dim(self, dim: int) -> None:
        dim = int(dim)
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self._dim = dim
        self._mat = np.zeros((0, dim), dtype=_F32)
        # Screening window. A float32 dot of two (near-)unit vectors is off
        # by at most ~dim * 2**-24 in any summation order; two rows can err
        # in opposite directions, and the rest is margin. Any row that could
        # be the exact best is therefore always re-scored.
        self._tol = 4.0 * dim * 2.0**-24

    @staticmethod
    def _unit_row(centroid: np.ndarray) -> np.ndarray:
        u = _normalize(centroid.astype(np.float64))
        # A centroid can only vanish if members cancel out; it then matches nothing.
        return np.zeros(centroid.shape, dtype=_F32) if u is None else u

    def _nearest(self, x32: np.ndarray, x64: np.ndarray, k: int) -> list[tuple[str, float]]:
        n = len(self._row_ids)
        if n == 0:
            return []
        approx = self._mat[:n] @ x32
        if k >= n:
            cand = np.arange(n)
        else:
            kth = approx.max() if k == 1 else np.partition(approx, n - k)[n - k]
            cand = np.flatnonzero(approx >= kth - self._tol)
        # float32 x float32 products are exact in float64, so the re-score
        # is a function of the two vectors alone.
        exact = _fixed_sum(self._mat[cand], x64)
        # Rounding unit vectors to float32 can push a cosine a hair past +-1.
        np.clip(exact, -1.0, 1.0, out=exact)
        scored = []
        for r, sim in zip(cand.tolist(), exact.tolist()):  # candidates only: usually one
            pid = self._row_ids[r]
            scored.append((-sim, self._patterns[pid].created_ts, pid))
        scored.sort()
        return [(pid, -neg) for neg, _, pid in scored[:k]]

    def _fresh_id(self, event_id: str) -> str:
        pid = pattern_id_for(self.space, event_id)
        i = 0
        # Only a redelivered event whose first pattern is still alive lands
        # here; a deterministic suffix keeps ids unique without randomness.
        while pid in self._patterns:
            i += 1
            pid = pattern_id_for(self.space, f"{event_id}\0{i}")
        return pid

    def _insert(self, p: Pattern) -> None:
        n = len(self._row_ids)
        if n == self._mat.shape[0]:
            self._grow(n + 1)
        self._mat[n] = self._unit_row(p.centroid)
        self._row_ids.append(p.pattern_id)
        self._row_of[p.pattern_id] = n
        self._patterns[p.pattern_id] = p

    def _grow(self, need: int) -> None:
        cap = self._mat.shape[0]
        # Doubling amortizes growth; stopping at max_patterns avoids paying
        # for rows the eviction policy will never let us use.
        new_cap = max(need, min(max(2 * cap, self._MIN_CAPACITY), self.cfg.max_patterns))
        mat = np.zeros((new_cap, self._mat.shape[1]), dtype=_F32)
        mat[:cap] = self._mat
        self._mat = mat

    def _remove(self, pattern_id: str) -> None:
        row = self._row_of.pop(pattern_id)
        last = len(self._row_ids) - 1
        if row != last:
            moved = self._row_ids[last]
            self._mat[row] = self._mat[last]
            self._row_ids[row] = moved
            self._row_of[moved] = row
        self._row_ids.pop()
        self._mat[last] = 0.0
        del self._patterns[pattern_id]


def _move_centroid(c: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """``c + (x - c) / n`` in float32, in exactly this order.

    The running mean of the members; the fixed order is what makes replays
    bit-identical.
    """
    out = c + (x - c) / _F32(n)
    out.flags.writeable = False
    return out
