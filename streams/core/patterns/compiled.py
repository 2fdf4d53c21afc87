"""numba's ``njit`` for the core's few scalar loops, or the plain function where numba is missing.

Calibration runs loops of O(records x clusters) scalar steps on a space's sample (the leader rule's
passes, Prim's spanning tree). numpy can only batch such a loop across its passes, and pays ~20-100
us of calls per step: ~70 ms per full choice at 256 records, inside the call that learns the record
that is due it. Compiled, the same loops take ~1 ms. The functions stay plain Python and numpy: with
numba missing they run as they are, slower, to the same results; ``fastmath`` is never set, so the
compiled code does the same IEEE operations in the same order (tests/unit/core/patterns/
test_compiled.py holds the compiled and the plain function equal).

``cache=True``: numba keeps the machine code beside the module (or in its user cache when that is
read-only), so only a machine's first run compiles (~1 s per function), and a process's first call
loads it (~0.3 s for all of them). ``calibration.load_kernels`` does both up front, so that a
worker's first choice does not pay for them.
"""
from __future__ import annotations

from collections.abc import Callable

try:
    from numba import njit as _njit
except ImportError:  # pragma: no cover - numba is a dependency; this keeps the core usable without it
    _njit = None

__all__ = ["COMPILED", "kernel"]

COMPILED = _njit is not None


def kernel(fn: Callable) -> Callable:
    """``fn`` compiled by numba (nopython, cached), or ``fn`` itself without numba."""
    return fn if _njit is None else _njit(cache=True)(fn)
