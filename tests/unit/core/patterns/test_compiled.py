"""The core's compiled loops (streams.core.patterns.compiled) give what their plain Python gives."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.patterns import arithmetic, calibration, hdbscan, load_kernels
from streams.core.patterns.compiled import COMPILED


def test_numba_compiles_the_kernels_here():
    # numba is a dependency: without it the core still runs, ~50x slower at each choice.
    assert COMPILED
    for fn in (calibration._leader_passes, hdbscan._prim, hdbscan._reach, arithmetic._fixed_dots,
               arithmetic._centred_row):
        assert hasattr(fn, "py_func"), fn


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 90), st.integers(1, 40))
def test_prim_compiled_is_prim_in_python_ties_included(seed, m, levels):
    rng = np.random.default_rng(seed)
    # Few distinct weights: many ties, which both must break alike (the first index).
    d = rng.integers(0, levels, size=(m, m)).astype(np.int64)
    mr = np.minimum(d, d.T)
    np.fill_diagonal(mr, 0)
    compiled, plain = hdbscan._prim(mr), hdbscan._prim.py_func(mr)
    for a, b in zip(compiled, plain):
        assert a.dtype == b.dtype and (a == b).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 90), st.integers(1, 5), st.integers(1, 30))
def test_mutual_reachability_compiled_is_numpys_ties_included(seed, m, k, distinct):
    rng = np.random.default_rng(seed)
    # Few distinct rows: repeated distances (ties at the k-th smallest), and an entry a hair past
    # the fixed-point one, as a float32 row's norm can give.
    x = rng.normal(size=(distinct, 8))[rng.integers(distinct, size=m)]
    z = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    g = calibration.gram(z)
    g[0, -1] = g[-1, 0] = hdbscan._ONE + 2
    k = min(k, m)
    d = hdbscan._ONE - g
    np.maximum(d, 0, out=d)
    np.fill_diagonal(d, 0)
    core = np.partition(d, k - 1, axis=1)[:, k - 1]
    expected = np.maximum(d, np.maximum(core[:, None], core[None, :]))
    for got in (hdbscan._mutual_reachability(g, k), hdbscan._reach.py_func(g, k, hdbscan._ONE)):
        assert got.dtype == np.int64 and (got == expected).all()


def test_prim_spans_the_records_with_the_least_total_weight():
    # Four records on a line at 0, 1, 3, 7: the tree is the three gaps between neighbours.
    x = np.array([0, 1, 3, 7])
    weight, a, b = hdbscan._prim(np.abs(x[:, None] - x[None, :]).astype(np.int64))
    assert sorted(weight.tolist()) == [1, 2, 4]
    assert sorted(tuple(sorted(e)) for e in zip(a.tolist(), b.tolist())) == [(0, 1), (1, 2), (2, 3)]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.integers(2, 80))
def test_leader_passes_compiled_are_the_passes_in_python(seed, k, m):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(k, 16))[rng.integers(k, size=m)] + rng.normal(scale=0.5, size=(m, 16))
    g = calibration.gram((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    steps = np.stack([rng.permutation(m) for _ in calibration.GRID])
    args = (g.astype(np.float64), steps, np.asarray(calibration.GRID), calibration._ROOT_SCALE)
    assert (calibration._leader_passes(*args) == calibration._leader_passes.py_func(*args)).all()


def test_loading_the_kernels_leaves_them_compiled_for_their_callers():
    load_kernels()
    for fn in (calibration._leader_passes, hdbscan._prim, arithmetic._fixed_dots, arithmetic._centred_row):
        assert fn.signatures, fn


def numpy_exact_dot(rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """exact_dot as numpy alone computes it: the formula the compiled loops must match."""
    shift = 58 - (rows.shape[-1] - 1).bit_length()
    p = rows * (np.asarray(other, dtype=np.float64) * 2.0**shift)
    np.rint(p, out=p)
    return p.astype(np.int64).sum(axis=-1).astype(np.float64) * 2.0**-shift


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 800), st.integers(-8, 2), st.booleans())
def test_the_hot_paths_compiled_arithmetic_is_numpys_bit_for_bit(seed, d, exponent, centred):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(4, d)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    x = rows[0].astype(np.float64) * 0.5
    assert arithmetic.exact_dot(rows, x).tobytes() == numpy_exact_dot(rows, x).tobytes()
    assert arithmetic.exact_dot(rows[:, ::-1], x[::-1]).tobytes() == numpy_exact_dot(rows, x).tobytes()
    assert float(arithmetic.exact_dot(rows[1], rows[2])).hex() == float(numpy_exact_dot(rows[1], rows[2])).hex()
    pairs = rows.astype(np.float64)[::-1] * 0.25  # row i against row i
    assert arithmetic.exact_dot(rows, pairs).tobytes() == numpy_exact_dot(rows, pairs).tobytes()
    # A centroid far from unit size, a mu or none, a lift: the single row is the batch's row.
    c = (rng.normal(size=(1, d)) * 10.0**exponent).astype(np.float32)
    mu = rng.normal(size=d) * 0.3 if centred else None
    h2 = float(rng.random() * 0.02)
    one, w = arithmetic.centred_row(c[0], mu, h2)
    many, ws = arithmetic.centred_rows(c, mu, h2)
    assert one.tobytes() == many[0].tobytes() and float(w).hex() == float(ws[0]).hex()
    out = np.empty(d, dtype=np.float32)
    scale = 2.0 ** (58 - (d - 1).bit_length())
    plain_w = arithmetic._centred_row.py_func(c[0], arithmetic._NO_MU if mu is None else mu, centred, h2, scale, out)
    assert out.tobytes() == one.tobytes() and float(plain_w).hex() == float(w).hex()
    # One record's unit row is the batch's row (float64 input, not float32-representable).
    v = rng.normal(size=(2, d)) * 10.0**exponent
    assert arithmetic.unit_row(v[1]).tobytes() == arithmetic.unit_rows(v)[1].tobytes()
