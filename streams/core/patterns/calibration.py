"""Per-space calibration of the match threshold: when a record joins a pattern, when it starts one.

A leader-style memory decides with one number, the match threshold ``t``: a record whose best
similarity to the space's patterns reaches ``t`` joins that pattern, otherwise it starts a new one.
No single ``t`` serves every space. Pooled transformer features, log-mel statistics and speaker
embeddings put their groups at very different similarities, and how finely a space should be cut
depends on how far its groups overlap: on recorded sounds whose groups overlap a lot the best fixed
threshold is ~0.85-0.9, on loose generated audio ~0.3. So each space chooses its own, from its own
records.

How (BIRCH and CluStream keep a threshold that the data moves; this module chooses it by model
selection instead, as one picks ``k`` for k-means):

1. **A sample.** The space keeps a sample of its records' unit vectors: the first ``size`` records,
   then a reservoir (a deterministic hash of the record's id decides which slot it replaces), so
   the sample follows a drifting stream. The sample is part of the space's changelogged state.
2. **Candidates.** The sample is centred on the memory's own centre ``mu`` (its own mean before
   the memory has one; a mean of patterns, not of records, so that one dominant group does not
   swamp it), and
   the same leader rule the memory uses is run on it at every threshold of a grid (0.30 to 0.95 in
   steps of 0.05): :func:`leader` clusters records in stream order, joining a record to the
   nearest running centroid when their similarity reaches the threshold. It works on the sample's
   Gram matrix, so a candidate costs O(sample x clusters), not a pass of the memory.
3. **Choice.** Each candidate clustering is scored by its mean silhouette (Rousseeuw 1987, cosine
   distance; a record alone in its cluster scores 0). The silhouette curve over the grid usually
   has a peak at a coarse threshold (a few large lumps look well separated) and, where the groups
   are real, another at the threshold that separates them. :func:`select` takes the *finest* local
   peak whose silhouette is within ``peak_share`` of the best: the finest cut that is about as well
   separated as the best one (the middle of it, when neighbouring thresholds cut the sample the same
   way). The share is 0.8: at 0.85 one benchmark stream (recorded speech MFCC statistics, one
   speaker's words, where only near copies of a word stand out) took its coarse peak (threshold 0.55,
   ARI 0.046) over a finer one at 0.81 of its silhouette (0.85, ARI 0.096). Over the 30 recorded and
   real streams in the benchmark's 5 orders, 0.8 moved by more than 0.005 only the speech
   statistics (up, in 6 stream-orders) and standardized icons log-mel in one order (down 0.018).
   The silhouette ranks a cut into small groups low, since a record alone in its cluster scores 0
   and a 256-record sample holds only a few copies of each. So a full choice has a second opinion,
   one that needs no threshold: where a peak finer than the chosen one is left (at any share),
   HDBSCAN's groups of the sample (the warm-up's, below) arbitrate, and the finer peak whose cut
   agrees with them best (adjusted Rand index) is taken if it agrees better than the chosen cut by
   more than ``FINER_MARGIN`` (0.05). One speaker's words as log-mel statistics are the case: the
   voice makes a few lumps that the silhouette ranks first, the words' near copies a finer peak at
   0.64 of it, which HDBSCAN's groups agree with (ARI 0.28 against 0.08). On the benchmark's 37
   streams in 5 orders, the arbitration took a finer peak only on the speech statistics, with
   agreement gains of 0.053-0.54, and in one order of real mixed log-mel, seed 8 (gain 0.32; ARI
   0.300 -> 0.309). The gains it declined were 0.0-0.014: generated audio in one order, where
   taking it would have cost ARI 0.71 -> 0.65, and standardized speech log-mel in the benchmark's
   order (0.0099). Speech log-mel rose 0.025 -> 0.088 in the benchmark's order and 0.023 -> 0.078
   over 4 others, speech MFCC 0.050 -> 0.083 and standardized speech log-mel 0.022 -> 0.048 over
   the 4; no other stream moved in any order. It costs ~3-6 ms once per full choice at 256 records
   (two HDBSCANs, which the warm-up's consolidation then reuses). An early choice is not
   arbitrated: it takes the best cut (When, below).

When. Records before the first choice are learned at ``calibration_start``, strict on purpose: a
record that starts a pattern it should have joined can be merged later (the absorbed id resolves to
the survivor), while a record that joins the wrong pattern cannot be taken out again. The space
chooses early (after 32, 64 or 128 records) only when the structure is clear (the best silhouette
is at least ``clear``; a handful of records from many groups often looks clear by chance, which is
why there is no choice before 32), otherwise after its ``warmup`` records (256; the sample keeps
the first 512), and then again every ``interval`` records over the reservoir, so that it follows a
drifting geometry.

The warm-up is then made good. While the sample still holds every record the space has learned
(until it is full), the sample says which of the strict start's patterns one group became: each
pattern goes to the group holding most of its sampled records, and the patterns that share a group
merge into the one that holds the most records, the oldest of those on a tie (announced as merges,
so every id a user saw resolves to its survivor). The most records, not the oldest: a consumer
of ``fms.recognitions`` that does not follow merges then sees more of a group's records under one
id (``benchmarks/quality.py``'s ``ari_raw``: mean 0.340 -> 0.352 over its 30 recorded and real
streams, up or equal on each; the resolved ARI and the patterns are the same).
Without it a space that chose 0.65 after a start at 0.9 kept its first 256 records split for good:
on recorded sounds, ARI 0.24 where the same threshold from the first record gives 0.71. Which
records are one group, :func:`groups` decides between two answers, as the threshold is chosen, by
which separates the sample better (silhouette):

- HDBSCAN's groups (:mod:`hdbscan`, smallest group ``calibration_min_cluster``), which follow each
  group's own density. A threshold cuts a tight group and a loose one at the same similarity, and
  lumps or shatters one of them: recorded sounds in ten varied copies each, a few per group in the
  sample, whose copies sit at very different distances (another sound mixed into some).
- The consensus of the leader rule at the chosen threshold over ``calibration_passes`` fixed orders
  of the sample (:func:`consensus`): one leader pass is one draw of an order-dependent rule, and the
  consensus is the cut the rule makes in most orders. It keeps large, evenly spread groups whole,
  where HDBSCAN with small groups finds sub-groups that its stability prefers.

HDBSCAN's groups are taken unless the consensus scores better by more than ``CONSENSUS_MARGIN``.
HDBSCAN's smallest group is 2 or 3, whichever separates the sample better (:func:`dense_groups`).

Regrouping. A group's records keep arriving after the choice, and at the chosen threshold a copy
far from its group's centroid (another sound mixed in, a loud noise) starts a pattern of its own.
So a space that took HDBSCAN's groups at its choice consolidates again every ``regroup`` (32)
records until its sample is full, on the grown sample: a group that had two copies at the choice
has four or five by then, dense enough to be found. A regroup reads the records as they came, not
centred by mu (space_memory's ``_regroup`` says why and what it gained), and takes HDBSCAN's finest
groups of 3 records or more (:func:`fine_groups`), one HDBSCAN with no silhouette. The first
regroups (smallest group 2 or 3 by silhouette, excess of mass, centred rows) raised the mean ARI of
the 30 recorded and real streams of ``benchmarks/quality.py`` (380-500 records each) from 0.464 to
0.491, and from 20 to 25 of them came within 0.02 of offline HDBSCAN over the whole stream; no
stream lost more than 0.002. A regroup costs ~4-15 ms at 288-512 records of 128-d (its Gram matrix and
one HDBSCAN), against ~8-40 ms for a full choice over 500 records (~50-140 ms before its loops were
compiled, streams.core.patterns.compiled), which is why it does not choose the threshold again. Where the consensus
was taken the groups are large and evenly spread, and HDBSCAN on the grown sample would lump the
closest of them: no regroup then.
The silhouette favours round groups, and a space follows groups that are not round through their
members (space_memory, step 4), so the consensus has to be clearly better. Measured on the
benchmark's streams (consensus minus HDBSCAN): at most +0.05 on 30 recorded and real streams, where
HDBSCAN's groups were the better ones wherever the two differed; +0.18 to +0.34 on generated
streams of 12 large evenly spread groups, whose sub-groups HDBSCAN splits (ARI 0.79-0.86 against
0.98-1.0). The margin sits in that gap. Over three orders of each of the 30 recorded and real
streams the mean ARI is 0.443 (0.434 with a margin of ``SAME_SCORE``, none lower by more than 0.01);
on 15 generated streams of 8-30 evenly spread groups 0.973 (0.979; HDBSCAN alone: 0.922).
It is done only when the chosen cut is an interior peak, separated better than the coarsest cut (by
``SAME_SCORE``): when the curve only falls from its coarse end the sample's groups overlap too much
to tell apart (overlapping siblings: consolidating there anyway took one generated stream from ARI
0.97 to 0.47), and the strict start's finer patterns are then worth more; the merge rule joins them
where they agree.

Determinism. The Gram matrix is fixed point (integers, ``2^-20`` steps): a BLAS product screens
it, and every entry whose rounding a float error could flip is recomputed exactly
(:func:`math.fsum` of exact float32 products). The leader, the silhouette, the consensus and HDBSCAN
then use integer sums and correctly rounded elementwise IEEE operations only, and the final mean is an
exact :func:`math.fsum`: the same sample gives the same threshold and the same consolidation, bit
for bit, on every machine, live or restored from the changelog.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from streams.core.patterns.arithmetic import GRAM_SHIFT
from streams.core.patterns.compiled import kernel
from streams.core.patterns.hdbscan import hdbscan
from streams.core.quality import adjusted_rand_index

__all__ = ["GRID", "Groups", "Selection", "consensus", "dense_groups", "fine_groups", "gram", "groups", "leader", "leaders",
           "select", "silhouette"]

GRID = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95
_SCALE = float(2**GRAM_SHIFT)  # fixed-point Gram entries: integers in steps of 2^-20
_ROOT_SCALE = float(2 ** (GRAM_SHIFT // 2))  # sqrt(_SCALE), exact
# A sample whose best cut scores less than this shows no grouping (random directions in 64
# dimensions score ~0.05, the loosest real streams benchmarked ~0.2): its space keeps its threshold.
MIN_STRUCTURE = 0.1
# Silhouettes of a 256-record sample that differ by less than this are the same score within its
# sampling error (~0.01-0.02): a finer cut that scores as well as the coarser one next to it is a
# peak too (a shoulder of the curve), not a point on its way down.
SAME_SCORE = 0.01
# How much better a finer peak's cut has to agree with HDBSCAN's groups (ARI) for the full choice
# to take it (select): cuts of one sample at neighbouring peaks agree with them to within ~0.015.
FINER_MARGIN = 0.05
# How much better the leader consensus has to separate the sample for the warm-up to take it
# instead of HDBSCAN's groups (module docstring: measured gaps of <= 0.05 and >= 0.18).
CONSENSUS_MARGIN = 0.1


def gram(rows: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Fixed-point Gram matrix ``round(rows @ rows.T * 2^20)`` of float32 rows of norm <= 1, as int64.

    The float64 BLAS product is within ``d * 2^-52`` of the exact one; an entry whose scaled value
    lies that close to a rounding boundary is recomputed exactly, so the result does not depend on
    the BLAS, its threads or its blocking. Each entry is the rounding of its exact value, so
    ``known``, the Gram matrix of the first ``k`` rows, gives the rest of it: only the new rows'
    products are computed (a sample that grows by a few rows between two looks at it), to the same
    bits as the whole.
    """
    z = np.asarray(rows, dtype=np.float32).astype(np.float64)
    m = z.shape[0]
    k = 0 if known is None else known.shape[0]
    out = np.empty((m, m), dtype=np.int64)
    if k:
        out[:k, :k] = known
    new = _fixed_products(z[k:], z)
    out[k:, :] = new
    out[:k, k:] = new[:, :k].T
    return out


def _fixed_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``round(a @ b.T * 2^20)`` as int64, each entry the rounding of its exact value (see gram)."""
    d = b.shape[1]
    scaled = (a @ b.T) * _SCALE
    out = np.rint(scaled)
    margin = (d + 8) * 2.0**-52 * _SCALE * 4.0
    frac = np.abs(scaled - np.floor(scaled) - 0.5)
    for i, j in zip(*np.nonzero(frac <= margin)):
        # float32 x float32 products are exact in float64; fsum rounds their sum once.
        out[i, j] = np.rint(math.fsum((a[i] * b[j]).tolist()) * _SCALE)
    return out.astype(np.int64)


def leader(g: np.ndarray, threshold: float) -> np.ndarray:
    """Leader clustering of the sample, in order, at ``threshold``: cluster labels 0, 1, ...

    A record joins the cluster whose running centroid it is most similar to (the first on ties)
    when that similarity reaches ``threshold``; otherwise it starts a cluster. With ``a`` the sum
    of the record's Gram entries with a cluster's members and ``q`` the sum of the members' Gram
    entries among themselves, the similarity to the centroid is ``a / sqrt(q)``.
    """
    m = g.shape[0]
    acc = np.zeros((m, m), dtype=np.int64)  # acc[:, c]: Gram sums with cluster c's members
    q = np.zeros(m, dtype=np.int64)
    labels = np.empty(m, dtype=np.int64)
    k = 0
    for x in range(m):
        if k:
            sims = acc[x, :k] / (np.sqrt(np.maximum(q[:k], 1).astype(np.float64)) * _ROOT_SCALE)
            c = int(np.argmax(sims))
            if sims[c] >= threshold:
                q[c] += 2 * acc[x, c] + g[x, x]
                acc[:, c] += g[:, x]
                labels[x] = c
                continue
        acc[:, k] = g[:, x]
        q[k] = g[x, x]
        labels[x] = k
        k += 1
    return labels


def leaders(g: np.ndarray, thresholds: tuple[float, ...], in_orders: list[np.ndarray] | None = None) -> np.ndarray:
    """:func:`leader` passes side by side: row ``i`` is ``leader`` at ``thresholds[i]`` over the
    records in ``in_orders[i]`` (default: stream order), labelled by record.

    The passes run in a compiled loop (:func:`_leader_passes`): a 256-record sample at the 14
    thresholds of the grid costs ~0.6 ms, and the 16 further orders of :func:`consensus` ~0.8 ms,
    where the numpy loop that shared its per-record calls between the passes took ~40 and ~25 ms
    (both at a space's first full sample, inside the call that learns its record). The arithmetic
    is :func:`leader`'s: the Gram sums are integers held exactly in float64, and each similarity is
    the same correctly rounded ``a / (sqrt(max(q, 1)) * 2^10)``, so the labels are identical
    (tests/unit/core/patterns/test_calibration.py holds them equal). Pass ``i`` numbers its
    clusters in the order it founds them, as :func:`leader` over ``g`` permuted by ``in_orders[i]``
    does.
    """
    m, count = g.shape[0], len(thresholds)
    steps = np.tile(np.arange(m), (count, 1)) if in_orders is None else np.stack(in_orders)
    return _leader_passes(g.astype(np.float64), steps.astype(np.int64, copy=False),
                          np.asarray(thresholds, dtype=np.float64), _ROOT_SCALE)


@kernel
def _leader_passes(gf: np.ndarray, steps: np.ndarray, limits: np.ndarray, root_scale: float) -> np.ndarray:
    # numba: one pass is O(records x clusters) scalar steps, which numpy can only batch across
    # passes (~100 us of per-call overhead per record). No fastmath: the same IEEE operations, in
    # the same order, as leader's.
    count, m = steps.shape
    labels = np.empty((count, m), dtype=np.int64)
    acc = np.empty((m, m))  # acc[c, r]: Gram sums of record r with the members of cluster c
    q = np.empty(m)  # Gram sums of each cluster's members among themselves
    den = np.empty(m)  # sqrt(max(q, 1)) * 2^10: a similarity is acc / den
    for i in range(count):
        limit = limits[i]
        k = 0
        for step in range(m):
            x = steps[i, step]
            c, best = -1, -np.inf
            for j in range(k):  # the first on ties, as np.argmax
                s = acc[j, x] / den[j]
                if s > best:
                    c, best = j, s
            if c >= 0 and best >= limit:
                q[c] += 2.0 * acc[c, x] + gf[x, x]
                den[c] = math.sqrt(max(q[c], 1.0)) * root_scale
                for r in range(m):
                    acc[c, r] += gf[x, r]
                labels[i, x] = c
            else:
                for r in range(m):
                    acc[k, r] = gf[x, r]
                q[k] = gf[x, x]
                den[k] = math.sqrt(max(q[k], 1.0)) * root_scale
                labels[i, x] = k
                k += 1
    return labels


def orders(m: int, passes: int) -> list[np.ndarray]:
    """``passes`` fixed orders of ``m`` records for :func:`consensus`: stream order, its reverse, then
    strides ``i -> (s + i * p) mod m`` (``p = 2, 3, ...`` coprime with ``m``), whose starts ``s``
    spread over the sample, so that no one record founds a cluster in every order."""
    out = [np.arange(m), np.arange(m)[::-1].copy()]
    p = 2
    while len(out) < passes and p < m - 1:
        if math.gcd(p, m) == 1:
            out.append((len(out) * m // passes + np.arange(m) * p) % m)
        p += 1
    return [out[i % len(out)] for i in range(passes)]


def consensus(g: np.ndarray, threshold: float, passes: int, first: np.ndarray | None = None) -> np.ndarray:
    """The cut the leader rule makes at ``threshold`` in most orders of the sample: labels 0, 1, ...

    One leader pass is one draw: the records that come first found the clusters, and another order
    of the same records cuts a group that overlaps its neighbours elsewhere (on a 256-record sample
    of 50 speakers, ARI 0.42 in stream order, 0.50 for the memory's own pass over the same records).
    So the sample is cut in ``passes`` fixed orders (:func:`orders`), ``together[i, j]`` counts the
    orders that put records ``i`` and ``j`` in one cluster, and the records are joined by average
    linkage on that count (evidence accumulation, Fred & Jain 2005) while the two clusters' records
    were together in a majority of the orders on average: ``2 * sum(together) > passes * |a| * |b|``.
    Integer sums, correctly rounded ratios and first-index ties: the same sample gives the same
    labels everywhere. One pass is :func:`leader` itself. ``first``: the stream-order cut, when the
    caller has it (:func:`select` returns it).
    """
    m = g.shape[0]
    todo = orders(m, passes)
    cuts = [] if first is None else [np.asarray(first, dtype=np.int64)]
    if len(cuts) < len(todo):
        cuts.extend(leaders(g, (threshold,) * (len(todo) - len(cuts)), todo[len(cuts):]))
    together = np.zeros((m, m), dtype=np.int64)
    for labels in cuts:
        together += labels[:, None] == labels[None, :]
    size = np.ones(m, dtype=np.int64)
    alive = np.ones(m, dtype=bool)
    owner = np.arange(m)
    mean = together / float(passes)  # the mean share of orders that put two clusters together
    np.fill_diagonal(mean, -1.0)
    while m > 1:
        a, b = divmod(int(np.argmax(mean)), m)  # a < b: the first on ties, rows before columns
        if not 2 * int(together[a, b]) > passes * int(size[a]) * int(size[b]):
            break
        together[a] += together[b]
        together[:, a] = together[a]
        size[a] += size[b]
        alive[b] = False
        owner[owner == b] = a
        row = together[a] / (float(passes) * float(size[a]) * size.astype(np.float64))
        row[~alive] = -1.0
        row[a] = -1.0
        mean[a], mean[:, a] = row, row
        mean[b], mean[:, b] = -1.0, -1.0
    # A cluster's owner is its first record (a < b above): sorted owners number clusters in order.
    return np.unique(owner, return_inverse=True)[1].reshape(-1).astype(np.int64)


class Groups(NamedTuple):
    labels: np.ndarray  # 0, 1, ... by record of the sample
    dense: bool  # HDBSCAN's groups (True) or the leader rule's consensus (False)


def groups(g: np.ndarray, threshold: float, passes: int, min_cluster: tuple[int, ...],
           first: np.ndarray | None = None, dense: np.ndarray | None = None) -> Groups:
    """The sample's groups for the warm-up's consolidation (module docstring).

    HDBSCAN's (:func:`dense_groups`), unless the :func:`consensus` of the leader rule at
    ``threshold`` over ``passes`` orders separates the sample better by more than
    ``CONSENSUS_MARGIN``. ``first``: the stream-order cut, and ``dense``: HDBSCAN's groups, when the
    caller has them.
    """
    gf = g.astype(np.float64)
    dense = dense_groups(g, min_cluster, gf) if dense is None else dense
    agreed = consensus(g, threshold, passes, first)
    if silhouette(g, agreed, gf) > silhouette(g, dense, gf) + CONSENSUS_MARGIN:
        return Groups(agreed, False)
    return Groups(dense, True)


def dense_groups(g: np.ndarray, min_cluster: tuple[int, ...], gf: np.ndarray | None = None) -> np.ndarray:
    """HDBSCAN's groups of the sample (a record in no dense group is alone) at the smallest group
    size of ``min_cluster`` whose groups separate the sample best (silhouette; the first on ties).

    How many records make a group depends on how often a group recurs in the sample, which grows
    with the sample: 2 keeps a sound heard twice in 256 records, 3 stops pairs of near copies from
    standing as groups of their own once the sample holds more of each group. The score picks,
    as it picks the threshold.
    """
    gf = g.astype(np.float64) if gf is None else gf
    best, score = None, -math.inf
    for k in min_cluster:
        labels = hdbscan(g, k)
        s = silhouette(g, labels, gf)
        if s > score:
            best, score = labels, s
    return best


def fine_groups(g: np.ndarray, min_cluster: int) -> np.ndarray:
    """A regroup's groups of the sample: HDBSCAN's leaf clusters of ``min_cluster`` records or more,
    core distances at each record's nearest neighbour (``min_samples`` 2); a record in none is alone.

    A regroup only merges, and a merge is never undone, so it asks for the finest dense groups: a
    group needs ``min_cluster`` records (3: a pair of near copies is not yet a group once the sample
    holds several copies of each), density is read at the nearest neighbour (a larger
    ``min_samples`` smooths it and chains neighbouring groups), and the condensed tree's leaves are
    taken, never a cluster that the tree splits further (excess of mass keeps such a union when it
    outlasts its parts: two neighbouring sounds as one). Measured at the regroups on the 30 recorded
    and real streams of ``benchmarks/quality.py``, against the silhouette's choice of a smallest group
    of 2 or 3 with ``min_samples`` equal to it and excess of mass: mean ARI 0.501 -> 0.517 in the
    benchmark's order, 0.474 -> 0.492 over 4 other orders (up by more than 0.01 on 20 streams, down
    on one: real mixed resemblyzer, -0.010). Smallest group 3 with excess of mass instead of leaves
    lumped (real icons resemblyzer 0.804 -> 0.635, mixed resemblyzer 0.495 -> 0.320), and the
    silhouette, which prefers 2 on every stream, cannot tell where 3 wins.
    """
    return hdbscan(g, min_cluster, min_samples=2, leaves=True)


def silhouette(g: np.ndarray, labels: np.ndarray, gf: np.ndarray | None = None) -> float:
    """Mean silhouette of a clustering of the sample, cosine distance; a lone record scores 0.

    Undefined for one cluster or for every record alone: -1 and 0 then. ``gf`` is ``g`` as float64,
    when the caller already has it (it scores many cuts of one sample).
    """
    m = len(labels)
    k = int(labels.max()) + 1 if m else 0
    if k < 2:
        return -1.0
    if k == m:
        return 0.0
    onehot = np.zeros((m, k))
    onehot[np.arange(m), labels] = 1.0
    # Each record's similarity sums per cluster. The entries are integers below 2^21 and a sum has
    # at most m of them, so every partial sum is an integer float64 holds exactly: the BLAS product
    # is exact whatever its order, and much faster than numpy's integer product.
    sums = (g.astype(np.float64) if gf is None else gf) @ onehot
    size = onehot.sum(axis=0)
    idx = np.arange(m)
    own = size[labels]
    own_mean = (sums[idx, labels] - g[idx, idx]) / (np.maximum(own - 1, 1) * _SCALE)
    other = sums / (size[None, :] * _SCALE)
    other[idx, labels] = -np.inf
    a = 1.0 - own_mean
    b = 1.0 - other.max(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return math.fsum(s.tolist()) / m


class Selection(NamedTuple):
    threshold: float | None  # None: the sample shows no structure
    clarity: float  # the best silhouette of the curve
    plateau: int  # neighbouring grid thresholds that cut the sample as the chosen one does
    rise: float  # the chosen cut's silhouette above the coarsest cut's: > 0 for an interior peak
    labels: np.ndarray | None  # the chosen cut: leader(g, threshold)
    # The finest threshold of the chosen one's plateau, which cuts the sample the same way (the
    # threshold itself when it has no plateau); None with no threshold. The member rule's bar.
    finest: float | None = None


def select(g: np.ndarray, peak_share: float, grid: tuple[float, ...] = GRID,
           dense: Callable[[], np.ndarray] | None = None) -> Selection:
    """The threshold the sample calls for, how clear its structure is, and how robust the cut is.

    The finest threshold of the grid whose silhouette is a local peak of the curve (no lower than
    its coarser neighbour's, within ``SAME_SCORE``) and at least ``peak_share`` of the best (module
    docstring, step 3); None when no candidate shows any
    structure (no cut scores ``MIN_STRUCTURE``: one blob, noise, or every record alone).
    ``dense``: HDBSCAN's groups of the sample, asked for only when a finer peak is left, which then
    arbitrates between that peak and the chosen one (:func:`_finer_peak`).
    """
    cuts = leaders(g, grid)
    gf = g.astype(np.float64)
    curve = [silhouette(g, labels, gf) for labels in cuts]
    best = max(curve)
    if not best >= MIN_STRUCTURE:
        return Selection(None, best, 0, 0.0, None)
    peaks = [i for i in range(len(grid)) if curve[i] >= peak_share * best and _is_peak(curve, i)]
    top = max(peaks)
    if dense is not None:
        finer = _finer_peak(cuts, curve, top, dense)
        if finer != top:  # plateau 1: only early choices ask for it, and they are not arbitrated
            return Selection(grid[finer], best, 1, curve[finer] - curve[0], cuts[finer], grid[finer])
    # Neighbours with the very same score cut the sample the same way: take the middle of such a
    # plateau, the threshold with the most room on both sides, not its edge; the finer of two
    # middles, as a split can be merged later and a lump cannot be taken apart.
    low = top
    while low > 0 and curve[low - 1] == curve[top]:
        low -= 1
    chosen = (low + top + 1) // 2
    return Selection(grid[chosen], best, top - low + 1, curve[top] - curve[0], cuts[chosen], grid[top])


def _is_peak(curve: list[float], i: int) -> bool:
    """No lower than its coarser neighbour (within ``SAME_SCORE``: a shoulder counts) and no lower
    than its finer one."""
    return (i == 0 or curve[i] >= curve[i - 1] - SAME_SCORE) and (i == len(curve) - 1 or curve[i] >= curve[i + 1])


def _finer_peak(cuts: np.ndarray, curve: list[float], top: int, dense: Callable[[], np.ndarray]) -> int:
    """The peak finer than ``top`` whose cut agrees best with HDBSCAN's groups (ARI), if it agrees
    better than ``top``'s by more than ``FINER_MARGIN``; else ``top`` (module docstring, step 3)."""
    finer = [i for i in range(top + 1, len(curve)) if _is_peak(curve, i)]
    if not finer:
        return top
    reference = dense().tolist()
    agree = {i: adjusted_rand_index(reference, cuts[i].tolist()) for i in (top, *finer)}
    pick = max(finer, key=lambda i: (agree[i], i))  # the finer on ties: a split can be merged later
    return pick if agree[pick] > agree[top] + FINER_MARGIN else top


def derived_merge(threshold: float, ratio: float) -> float:
    """Merge threshold for patterns of several members: ``1 - ratio * (1 - threshold)``.

    A merge joins two centroids, each a mean of members at ~``kappa`` to it, so it asks for far
    more than a join does, in proportion to the room the match threshold leaves below 1 (0.95 at
    0.6 with the default ratio 0.125: the memory's fixed merge threshold at its fixed default).
    """
    return 1.0 - ratio * (1.0 - threshold)


def derived_band(threshold: float, ratio: float) -> float:
    """Width of the related band below the match threshold: ``ratio * (1 - threshold)`` (0.1 at 0.6)."""
    return ratio * (1.0 - threshold)
