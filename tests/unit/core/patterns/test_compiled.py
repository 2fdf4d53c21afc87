"""The core's compiled loops (streams.core.patterns.compiled) give what their plain Python gives."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.patterns import calibration, hdbscan
from streams.core.patterns.compiled import COMPILED


def test_numba_compiles_the_kernels_here():
    # numba is a dependency: without it the core still runs, ~50x slower at each choice.
    assert COMPILED
    for fn in (calibration._leader_passes, hdbscan._prim):
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
    calibration.load_kernels()
    assert calibration._leader_passes.signatures and hdbscan._prim.signatures
