"""Per-space calibration of the match threshold: when a record joins a pattern, when it starts one.

A leader-style memory decides with one number, the match threshold ``t``: a record whose best
similarity ``s1`` to the space's patterns is ``>= t`` joins that pattern, otherwise it starts a new
one. No single ``t`` serves every space (pooled transformer features, log-mel statistics and
speaker embeddings put their groups at very different similarities), so each space learns its own
from its own stream.

The evidence. Every record's ``s1`` is either a *within* similarity (the record belongs to a pattern
that exists) or a *between* similarity (it is the first of its group, and ``s1`` is to its nearest
other group). In a space with groups the two form two modes, and ``t`` belongs in the valley
between them. The memory keeps both kinds on its patterns, at no extra cost per record:

- a pattern's ``created_similarity``: the ``s1`` of the record that created it (a *between*
  sample, or a *within* one the threshold then rejected);
- its ``joins`` and ``join_sum``: how many records joined it and the sum of their ``s1``
  (*within* samples); a merge moves the absorbed pattern's creation sample to its joins, since the
  merge says that record belonged after all.

The rule (:func:`calibrate`). Otsu's split of those samples -- the two-class partition with the
largest between-class variance -- separates the *between* class from the *within* class; the upper
class mean ``kappa`` is how close records sit to their own pattern's centre. Two members of one
group sit at ~``kappa^2`` to each other, and a new pattern starts as a single record, so a join has
to accept ``kappa^2`` (the same reasoning that set the old fixed default, see
streams.core.patterns step 4): the threshold is ``kappa^2``, clamped to ``[min, max]``. It is
computed over the live patterns at a schedule that depends on the record count alone, so evicted
patterns drop out and the threshold follows a drifting geometry. Join means are weighted by
``min(joins, window)`` as the centring mean is, so that a few large patterns do not drown the
evidence of many small ones. A split is believed only when it explains at least
``MIN_SEPARABILITY`` of the samples' variance (Otsu's eta); one mode keeps the threshold where it is.

Status (benchmarks/README.md has the figures): opt-in. It lifts the generated audio stream and
real recorded sounds over the fixed 0.6, and keeps the well-separated streams, but it lumps the
sibling groups of the "overlapping" stream early (a low threshold before the siblings have shown
themselves cannot be undone), so the product's default stays the fixed 0.6 until a rule wins
everywhere.

Until there is evidence of both kinds the threshold stays at ``start``, high on purpose: a record
that starts a pattern it should have joined is repaired later by a merge (ids of absorbed patterns
resolve to the survivor), while a record that joins the wrong pattern can never be taken out again.

Everything here is elementwise IEEE arithmetic and sequential sums in a canonical order (by value, then weight),
so the same patterns give the same bits on every machine, live or restored.
"""
from __future__ import annotations

import numpy as np

__all__ = ["calibrate", "derived_band", "derived_merge"]

# Below this many samples of each kind, or with no clear valley, the evidence is too thin to move.
MIN_SAMPLES = 3
# A valley is believed only when the split explains this share of the samples' variance (Otsu's
# separability eta = between-class / total variance); unimodal evidence keeps the threshold where it is.
MIN_SEPARABILITY = 0.65


def calibrate(
    values: np.ndarray,
    weights: np.ndarray,
    current: float,
    lo: float,
    hi: float,
) -> float:
    """The match threshold that weighted similarity samples call for, within ``[lo, hi]``.

    ``current`` is kept when the samples do not show two classes clearly (see module docstring).
    The result is a function of the multiset of ``(value, weight)`` pairs, not of their order: they
    are sorted by value, then weight, and summed in that order (sequential cumulative sums of
    correctly rounded IEEE operations, the same bits everywhere).
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    keep = (w > 0.0) & np.isfinite(v)
    v, w = v[keep], w[keep]
    n = len(v)
    if n < 2 * MIN_SAMPLES:
        return current
    order = np.lexsort((w, v))
    v, w = v[order], w[order]
    cw = np.cumsum(w)
    cs = np.cumsum(w * v)
    cq = np.cumsum(w * v * v)
    total_w, total_s, total_q = float(cw[-1]), float(cs[-1]), float(cq[-1])
    mean = total_s / total_w
    var = total_q / total_w - mean * mean
    if not var > 1e-12:
        return current
    w0 = cw[:-1]
    w1 = total_w - w0
    m0 = cs[:-1] / w0
    m1 = (total_s - cs[:-1]) / w1
    between = w0 * w1 * (m0 - m1) ** 2
    k = np.arange(n - 1)
    # A split sits between distinct values, with enough samples on each side.
    valid = (k + 1 >= MIN_SAMPLES) & (n - k - 1 >= MIN_SAMPLES) & (v[1:] != v[:-1])
    if not valid.any():
        return current
    between = np.where(valid, between, -1.0)
    best = int(np.argmax(between))  # the first of equal maxima
    eta = float(between[best]) / (total_w * total_w * var)
    if eta < MIN_SEPARABILITY:
        return current
    # The upper class is the within-pattern evidence: a record's similarity to its own pattern,
    # ~kappa once patterns hold several members. Two members of one group sit at ~kappa^2 to each
    # other, and a new pattern is a single record, so that is what a join has to accept.
    kappa = float(m1[best])
    return min(hi, max(lo, kappa * kappa))


def derived_merge(threshold: float, ratio: float) -> float:
    """Merge threshold for patterns of several members: ``1 - ratio * (1 - threshold)``.

    A merge joins two centroids, each a mean of members at ~``kappa`` to it, so it asks for far
    more than a join does, in proportion to the room the match threshold leaves below 1 (0.95 at
    0.6 with the default ratio 0.125, the value the memory used before it calibrated).
    """
    return 1.0 - ratio * (1.0 - threshold)


def derived_band(threshold: float, ratio: float) -> float:
    """Width of the related band below the match threshold: ``ratio * (1 - threshold)`` (0.1 at 0.6)."""
    return ratio * (1.0 - threshold)
