"""numba's ``njit`` for the core's few scalar loops, or the plain function where numba is missing.

Two kinds of loop pay for it:

- Calibration's, on a space's sample: the leader rule's passes, Prim's spanning tree and HDBSCAN's
  mutual reachability (a k-th smallest per row), O(records x clusters) or O(records^2) scalar steps. numpy can only batch such a loop across its passes and pays ~20-100 us
  of calls per step: ~70 ms per full choice at 256 records, inside the call that learns the record
  that is due it. Compiled, the loops take ~1 ms and the choice ~16-20 ms.
- The hot path's exact arithmetic (arithmetic.exact_dot, centred_row): a few numpy calls and
  temporaries per vector, ~10-20 us a call at 768 dimensions, several calls per record. Compiled,
  learning a record of benchmarks/throughput.py's stream takes ~112 instead of ~140 us.

The functions stay plain Python and numpy: with numba missing they run as they are, slower, to the
same results. ``fastmath`` is never set, so the compiled code does the same IEEE operations in the
same order, and every result is the same bits as numpy's (tests/unit/core/patterns/
test_compiled.py holds each kernel equal to its plain function or to the numpy formula).

``cache=True``: numba keeps the machine code beside the module (or in its user cache when that is
read-only), so only a machine's first run compiles (~1 s per function), and a process's first call
loads it (~0.3 s for all of them). ``space_memory.load_kernels`` does both up front, so that a
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
