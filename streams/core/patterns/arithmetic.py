"""The pattern memory's arithmetic, bit-for-bit the same on every machine.

Replay and recovery compare memories bit for bit, so nothing here may depend on how a BLAS
library blocks a sum or on the platform's libm: dot products are summed in a fixed order in float64
(``exact_dot``), ``exp2``/``log2`` are short series of correctly rounded operations, and every
vector that is stored is rounded to float32 once (``frozen_f32``). Why each is needed is in
:mod:`streams.core.patterns.space_memory`'s docstring (steps 1-4).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streams.core.patterns.compiled import kernel

F32 = np.float32
LN2 = 0.6931471805599453
LOG2E = 1.4426950408889634
_SQRT_HALF = 0.7071067811865476
# The calibration's Gram matrices are fixed point: integers in steps of 2^-GRAM_SHIFT
# (calibration.gram), which hdbscan.py reads as distances from 2^GRAM_SHIFT.
GRAM_SHIFT = 20


def _exp2_coefs() -> tuple[float, ...]:
    out, c = [1.0], 1.0
    for k in range(1, 14):
        c = c * LN2 / k  # IEEE ops only: the same on every machine
        out.append(c)
    return tuple(out)


_EXP2_C = _exp2_coefs()  # 2**f = sum (f ln2)^k / k!, |f| <= 1/2: error < 1e-17
_LOG_C = tuple(1.0 / (2 * j + 1) for j in range(12))  # atanh series, |t| <= 0.172


def exp2(y: float) -> float:
    """``2**y`` for finite ``y <= 0`` or moderate positive ``y``."""
    y = max(y, -1100.0)
    k = math.floor(y + 0.5)
    f = y - k
    p = _EXP2_C[-1]
    for c in _EXP2_C[-2::-1]:
        p = p * f + c
    return math.ldexp(p, k)


def exp2_v(y: np.ndarray) -> np.ndarray:
    y = np.maximum(y, -1100.0)
    k = np.floor(y + 0.5)
    f = y - k
    p = np.full(y.shape, _EXP2_C[-1])
    for c in _EXP2_C[-2::-1]:
        p = p * f + c
    return np.ldexp(p, k.astype(np.int64))


def log2(x: float) -> float:
    """``log2(x)`` for finite ``x > 0``."""
    m, e = math.frexp(x)
    if m < _SQRT_HALF:
        m = m * 2.0
        e -= 1
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    s = _LOG_C[-1]
    for c in _LOG_C[-2::-1]:
        s = s * t2 + c
    return e + (2.0 * t * s) * LOG2E


def log2_v(x: np.ndarray) -> np.ndarray:
    m, e = np.frexp(x)
    low = m < _SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = e - low
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    s = np.full(x.shape, _LOG_C[-1])
    for c in _LOG_C[-2::-1]:
        s = s * t2 + c
    return e + (2.0 * t * s) * LOG2E


def frozen_f32(a: Any) -> np.ndarray:
    """A private, read-only float32 copy.

    Centroids are replaced, never written in place, so snapshots handed to
    the shell can share the array and stay valid while it persists them.
    """
    out = np.array(a, dtype=F32, copy=True)
    out.flags.writeable = False
    return out


def exact_dot(rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Row dot products ``rows @ other`` that are the same bits on every machine.

    Each elementwise float64 product (exact for float32 inputs) is rounded
    to a fixed-point integer with ``2^shift`` steps, ``shift = 58 -
    ceil(log2 d)``, and the integers are summed. Integer addition is
    associative, so unlike ``np.sum``, BLAS or any float summation the
    result cannot depend on order, SIMD width, threads, library version or
    where the row sits in memory. Requires ``|rows_i * other_i| <= 4`` (unit
    rows, or rows scaled by their largest magnitude); the absolute error is below
    ``d * 2^-(shift+1)``, ~1e-12 at 768 dimensions. One row or a matrix of rows.

    The loop is compiled (:mod:`streams.core.patterns.compiled`): the numpy form (scale, round,
    cast, sum: four temporaries) cost ~10 us a call at 768 dimensions, on every record's path.
    """
    d = rows.shape[-1]
    shift = 58 - (d - 1).bit_length()  # |sum| <= d * 4 * 2^shift <= 2^60
    other = np.asarray(other)
    if rows.ndim <= 2 and (other.ndim == 1 or other.shape == rows.shape):
        # One compiled loop for a row, rows against one vector (a (1, d) view the loop reuses for
        # every row: np.broadcast_to cost ~3.7 us a call), and rows against rows of the same shape.
        many = rows.ndim == 2
        rows2 = rows if many else rows[None, :]
        others = other[None, :] if other.ndim == 1 else other
        out = np.empty(rows2.shape[0])
        _fixed_dots(rows2, others, math.ldexp(1.0, shift), out)
        return out if many else out[0]
    # Anything else numpy broadcasts. Scaling by a power of two is exact, so each product is
    # (rows * other) * 2^shift.
    p = rows * (other.astype(np.float64) * 2.0**shift)
    np.rint(p, out=p)
    return p.astype(np.int64, copy=False).sum(axis=-1).astype(np.float64) * 2.0**-shift


@kernel
def _fixed_dots(rows: np.ndarray, others: np.ndarray, scale: float, out: np.ndarray) -> None:
    # In numpy's order: the other factor scaled first (exact: a power of two), then the product;
    # np.rint rounds half to even, as numpy's; the int64 sum is exact in any order.
    inverse = 1.0 / scale  # a power of two: exact
    one = others.shape[0] == 1  # one vector against every row
    for i in range(rows.shape[0]):
        k = 0 if one else i
        acc = 0
        for j in range(rows.shape[1]):
            acc += np.int64(np.rint(rows[i, j] * (np.float64(others[k, j]) * scale)))
        out[i] = np.float64(acc) * inverse


def scaled_dot(x: np.ndarray, y: np.ndarray) -> float:
    """``x . y`` of float64 vectors of any size, via :func:`exact_dot` of scaled copies."""
    sx = max(float(np.max(np.abs(x))), 1.0)  # dividing by 1.0 is exact: unit-size vectors keep their bits
    sy = max(float(np.max(np.abs(y))), 1.0)
    return float(exact_dot(x / sx, y / sy)) * sx * sy


def tree_sum_rows(a: np.ndarray) -> np.ndarray:
    """Column sums of a float64 ``(m, d)`` array, a fixed pairwise tree over rows. Destroys ``a``."""
    m = a.shape[0]
    while m > 1:
        half = m // 2
        np.add(a[:half], a[half : 2 * half], out=a[:half])
        if m % 2:
            a[half] = a[m - 1]
            m = half + 1
        else:
            m = half
    return a[0].copy()


def unit_rows(v: np.ndarray) -> np.ndarray:
    """float64 rows -> float32 unit rows; zero rows stay zero.

    Scaling by the largest magnitude first keeps the squares from overflowing.
    The same operations as :func:`unit_vector`, so the bits agree.
    """
    m = np.max(np.abs(v), axis=1)
    zero = m == 0.0
    m[zero] = 1.0
    s = v / m[:, None]
    norm = np.sqrt(exact_dot(s, s))
    norm[zero] = 1.0
    s /= norm[:, None]
    return s.astype(F32)


def unit_row(v: np.ndarray) -> np.ndarray:
    """:func:`unit_rows` of one float64 vector, the same bits: centred_row's compiled loop with no mu
    and no lift is that normalization, ~3 us against ~25 us for unit_rows' numpy calls on one row."""
    return centred_row(v, None, 0.0)[0]


def unit_vector(v: np.ndarray) -> np.ndarray:
    """A finite, non-zero float64 vector -> float32 unit vector."""
    m = float(np.max(np.abs(v)))
    s = v / m
    return (s / math.sqrt(float(exact_dot(s, s)))).astype(F32)


def centred_rows(c: np.ndarray, mu64: np.ndarray | None, h2: float) -> tuple[np.ndarray, np.ndarray]:
    """Matching-space rows of float32 input-space vectors ``c`` (m, d).

    Returns float32 rows ``a`` and float64 lift weights ``w`` with ``a_i . a_j +
    w_i w_j`` the similarity (space_memory docstring, step 2). ``z = c - mu`` is
    scaled by its largest magnitude first, as in :func:`unit_rows`, so any
    centroid a table holds is safe. Elementwise IEEE ops and
    :func:`exact_dot` only: a row's bits do not depend on the block, and
    :func:`centred_row` computes the same bits for one vector.
    """
    if mu64 is None:
        return unit_rows(c.astype(np.float64)), np.zeros(c.shape[0])
    s = c.astype(np.float64)
    s -= mu64  # z = c - mu; in place from here on (same IEEE results, fewer copies)
    m = np.max(np.abs(s), axis=1)
    zero = m == 0.0  # c == mu: only the lift is left
    m[zero] = 1.0
    s /= m[:, None]
    norm = np.sqrt(exact_dot(s, s) + h2 / (m * m))
    norm[norm == 0.0] = 1.0  # z == 0 and no lift: a zero row, which matches nothing
    w = (math.sqrt(h2) / m) / norm  # pure lift (h / h == 1) where z == 0
    s /= norm[:, None]
    return s.astype(F32), w


def centred_row(c: np.ndarray, mu64: np.ndarray | None, h2: float) -> tuple[np.ndarray, float]:
    """:func:`centred_rows` of one vector (the hot path): the same operations, the same bits, in a
    compiled loop (~20 us a call at 768 dimensions as six numpy calls)."""
    out = np.empty(c.shape[0], dtype=F32)
    scale = math.ldexp(1.0, 58 - (c.shape[0] - 1).bit_length())  # exact_dot's 2^shift
    w = _centred_row(c, _NO_MU if mu64 is None else mu64, mu64 is not None, h2, scale, out)
    return out, w


_NO_MU = np.zeros(0)


@kernel
def _centred_row(c: np.ndarray, mu64: np.ndarray, centred: bool, h2: float, scale: float,
                 out: np.ndarray) -> float:
    # centred_rows' operations, element by element: z = c - mu, s = z / max|z|, the exact dot of s
    # with itself (exact_dot's fixed point, in its order of operations), s / norm rounded to float32.
    d = c.shape[0]
    z = np.empty(d)
    m = 0.0
    for j in range(d):
        z[j] = np.float64(c[j]) - mu64[j] if centred else np.float64(c[j])
        m = max(m, abs(z[j]))
    if m == 0.0:
        m = 1.0
    acc = 0
    for j in range(d):
        z[j] = z[j] / m
        acc += np.int64(np.rint(z[j] * (z[j] * scale)))
    dot = np.float64(acc) * (1.0 / scale)
    if not centred:
        norm = math.sqrt(dot)
        if norm == 0.0:
            norm = 1.0
        w = 0.0
    else:
        norm = math.sqrt(dot + h2 / (m * m))
        if norm == 0.0:
            norm = 1.0
        w = (math.sqrt(h2) / m) / norm
    for j in range(d):
        out[j] = np.float32(z[j] / norm)
    return w


def move_centroid(c: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """``c + (x - c) / n`` in float32, in exactly this order.

    With ``n = min(count, centroid_window)``: the running mean of the members,
    then a moving average over ~``centroid_window`` of them (docstring, step
    4). The fixed order is what makes replays bit-identical.
    """
    out = c + (x - c) / F32(n)
    out.flags.writeable = False
    return out
