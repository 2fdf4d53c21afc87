"""HDBSCAN of a space's calibration sample, in exact integer arithmetic: which records form dense groups.

A space's warm-up is learned at a strict threshold and then consolidated: the patterns whose
records one group holds merge (:mod:`streams.core.patterns.calibration`). Which records are one
group is what this module answers, for the sample's few hundred records, by HDBSCAN (Campello,
Moulavi and Sander 2013; McInnes, Healy and Astels 2017), the offline clusterer that came out best
on the recorded-sound benchmark streams without being told the number of groups. A threshold rule
cuts every group at the same similarity; HDBSCAN follows each group's own density, so a tight group
is not lumped with a loose neighbour and a loose group is not shattered, and records that belong to
no dense group (another sound mixed in, heavy noise) stay on their own instead of gluing groups
together.

Why here and not scikit-learn: the core is plain numpy, and the result must be the same bits on
every machine (the consolidation is part of the space's memory, which replay and recovery rebuild).
Distances are the fixed-point Gram matrix's integers (:func:`calibration.gram`), so the core
distances, the mutual reachability graph, its minimum spanning tree and the single-linkage
hierarchy are integer computations with first-index ties; the cluster stabilities are sums of
correctly rounded ``1 / sqrt(distance)`` in a fixed order. scikit-learn's HDBSCAN is a
benchmark-only dependency. On unit rows, with its default Euclidean metric, the two give the same
groups with groups of two records or more on the test's samples (tests/unit/core/patterns/test_hdbscan.py)
and on 141 of 148 benchmark samples (the first 256 and 512 records of the 37 streams, centred and
not); the other 7 agree to ARI 0.98 or more: uncentred rows of one sound can be so close that the
fixed-point steps tie. With larger smallest groups, equal mutual reachability distances can be
linked in another order.

Why the chord: the spanning tree and the hierarchy are the same for any increasing function of the
distance, but the stabilities are not. Excess of mass weighs a record by the inverse of the
distance at which it leaves; on the cosine distance ``1 - cos = chord^2 / 2`` that weight is the
chord's squared, so near copies weigh much more than the looser groups around them, and more pairs
stood as groups of their own (54 pairs against 44 on the recorded icons log-mel stream, all 380
records, smallest group 2). That offline clustering scored ARI 0.356 against 0.462 with the chord,
and 0.345 against 0.454 on icons MFCC.

The steps, for ``m`` records and ``min_cluster_size`` = ``min_samples`` = ``k`` (scikit-learn's
defaults tie the two; ``min_samples`` may be set apart, and then it alone sets the core distances
of step 2, and the leaf clusters may be selected in step 5 instead):

1. ``d(i, j) = 2^20 - g(i, j)``: the cosine distance in steps of ``2^-20`` (0 on the diagonal),
   which orders pairs as the chord ``|u_i - u_j| = sqrt(2 d)`` does.
2. ``core(i)``: the distance to the ``(k - 1)``-th nearest other record (the ``k``-th counting
   itself); ``mr(i, j) = max(core(i), core(j), d(i, j))``, the mutual reachability distance.
3. The minimum spanning tree of ``mr`` (Prim, from record 0), and the single-linkage hierarchy from
   its edges sorted by weight (stable: ties in tree order).
4. The condensed tree: going down from the root, a split whose two sides both hold ``k`` records
   or more makes two clusters; a side with fewer records falls out of its cluster, record by
   record, at ``lambda = 1 / sqrt(d)``, the inverse chord up to the factor ``sqrt(2 * 2^-20)``
   that scales every stability alike (``d`` at least one step, so lambda is finite).
5. Each cluster's stability is the sum over its records and child clusters of ``(lambda at which
   they leave - lambda at which the cluster was born) * size``; clusters are selected by excess of
   mass: bottom up, a cluster is kept when it is at least as stable as its selected descendants
   together. The root is never selected (one group for everything is not a finding).
6. A record belongs to the selected cluster it falls out of, or of which it is a descendant;
   otherwise it is noise and alone.
"""
from __future__ import annotations

import math

import numpy as np

from streams.core.patterns.arithmetic import GRAM_SHIFT
from streams.core.patterns.compiled import kernel

__all__ = ["hdbscan"]

_ONE = 2**GRAM_SHIFT  # the Gram matrix's fixed-point one (calibration.gram)


def hdbscan(g: np.ndarray, min_cluster_size: int, min_samples: int | None = None,
            leaves: bool = False) -> np.ndarray:
    """Cluster labels 0, 1, ... of the sample whose fixed-point Gram matrix is ``g``.

    ``min_samples`` (default: ``min_cluster_size``) sets the core distances, ``min_cluster_size``
    the smallest cluster of the condensed tree; ``leaves`` selects the tree's leaf clusters instead
    of by excess of mass (scikit-learn's ``cluster_selection_method="leaf"``): the finest groups of
    ``min_cluster_size`` records or more, never a lump of several. Noise records get a label of
    their own each. Labels are numbered by their first record, so the same sample gives the same
    labels.
    """
    m = g.shape[0]
    k = int(min_cluster_size)
    ms = k if min_samples is None else int(min_samples)
    if k < 2 or ms < 1:
        raise ValueError("min_cluster_size must be >= 2 and min_samples >= 1")
    if m <= k:
        return np.arange(m, dtype=np.int64)
    parents, children, lambdas, sizes = _condensed_tree(_spanning_tree(_mutual_reachability(g, min(ms, m))), m, k)
    selected = _leaves(parents, children, m) if leaves else _select(parents, children, lambdas, sizes, m)
    return _label(parents, children, selected, m)


def _mutual_reachability(g: np.ndarray, k: int) -> np.ndarray:
    return _reach(np.ascontiguousarray(g, dtype=np.int64), k, _ONE)


@kernel
def _reach(g: np.ndarray, k: int, one: int) -> np.ndarray:
    # numba: one pass of integer steps per row, where numpy's partition and three full temporaries
    # cost ~3 ms at 512 records (a regroup's size), 0.4 ms compiled. Integers only: the same bits.
    m = g.shape[0]
    d = np.empty((m, m), dtype=np.int64)
    core = np.empty(m, dtype=np.int64)
    small = np.empty(k, dtype=np.int64)  # the row's k smallest distances, ascending
    for i in range(m):
        for s in range(k):
            small[s] = np.iinfo(np.int64).max
        for j in range(m):
            # A float32 row's norm may round a hair above 1: no distance below 0, none to itself.
            v = 0 if i == j else max(one - g[i, j], 0)
            d[i, j] = v
            if v < small[k - 1]:
                s = k - 1
                while s > 0 and small[s - 1] > v:
                    small[s] = small[s - 1]
                    s -= 1
                small[s] = v
        core[i] = small[k - 1]  # the k-th smallest, the row's own 0 included
    for i in range(m):
        for j in range(m):
            c = max(core[i], core[j])
            if d[i, j] < c:
                d[i, j] = c
    return d


def _spanning_tree(mr: np.ndarray) -> list[tuple[int, int, int]]:
    """Prim's minimum spanning tree: ``(weight, a, b)`` edges, sorted by weight, ties in tree order."""
    weight, a, b = _prim(np.ascontiguousarray(mr, dtype=np.int64))
    order = np.argsort(weight, kind="stable")
    return list(zip(weight[order].tolist(), a[order].tolist(), b[order].tolist()))


@kernel
def _prim(mr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # numba: m steps of O(m) scalar work each, where a numpy step costs ~20 us of calls (~5 ms at
    # 256 records, 0.1 ms compiled). Integers only: the same tree everywhere.
    m = mr.shape[0]
    inside = np.zeros(m, dtype=np.bool_)
    inside[0] = True
    best = mr[0].copy()
    via = np.zeros(m, dtype=np.int64)
    weight = np.empty(m - 1, dtype=np.int64)
    a = np.empty(m - 1, dtype=np.int64)
    b = np.empty(m - 1, dtype=np.int64)
    for e in range(m - 1):
        j = -1
        for i in range(m):  # the first on ties
            if not inside[i] and (j < 0 or best[i] < best[j]):
                j = i
        weight[e], a[e], b[e] = best[j], via[j], j
        inside[j] = True
        for i in range(m):
            if not inside[i] and mr[j, i] < best[i]:  # strict: an earlier attachment keeps its tie
                best[i] = mr[j, i]
                via[i] = j
    return weight, a, b


def _condensed_tree(edges: list[tuple[int, int, int]], m: int, k: int):
    """Single linkage from the sorted edges, condensed at ``k``: parallel lists of the tree's entries
    ``(parent cluster, child, lambda, child size)``; children below ``m`` are records."""
    # Single linkage: node m + i is the i-th merge, of two roots, at the edge's weight.
    root_of = list(range(m))
    left, right, height, size = [], [], [], []

    def find(x: int) -> int:
        while root_of[x] != x:
            root_of[x] = root_of[root_of[x]]
            x = root_of[x]
        return x

    node_size = [1] * m
    for w, a, b in edges:
        ra, rb = find(a), find(b)
        node = m + len(left)
        left.append(ra)
        right.append(rb)
        height.append(w)
        size.append(node_size[ra] + node_size[rb])
        node_size.append(size[-1])
        root_of.append(node)
        root_of[ra] = root_of[rb] = node

    def records(node: int) -> list[int]:
        out, todo = [], [node]
        while todo:
            x = todo.pop()
            if x < m:
                out.append(x)
            else:
                todo.extend((right[x - m], left[x - m]))
        return sorted(out)

    parents, children, lambdas, sizes = [], [], [], []
    root = m + len(left) - 1
    label_of = {root: m}
    next_label = m + 1
    todo = [root]
    while todo:
        node = todo.pop(0)
        here = label_of[node]
        a, b = left[node - m], right[node - m]
        # 1 / distance, as the chord between unit rows (module docstring), at least one step apart.
        lam = 1.0 / math.sqrt(max(height[node - m], 1))
        na, nb = node_size[a], node_size[b]
        if na >= k and nb >= k:
            for child in (a, b):
                label_of[child] = next_label
                parents.append(here)
                children.append(next_label)
                lambdas.append(lam)
                sizes.append(node_size[child])
                next_label += 1
                if child >= m:
                    todo.append(child)
            continue
        for child in (a, b):
            if node_size[child] >= k:  # the cluster goes on as this side
                label_of[child] = here
                if child >= m:
                    todo.append(child)
            else:  # this side's records fall out of the cluster here
                for r in records(child):
                    parents.append(here)
                    children.append(r)
                    lambdas.append(lam)
                    sizes.append(1)
    return parents, children, lambdas, sizes


def _select(parents, children, lambdas, sizes, m: int) -> set[int]:
    """Excess of mass: the clusters to keep (never the root, ``m``)."""
    birth = {m: 0.0}
    for p, c, lam, s in zip(parents, children, lambdas, sizes):
        if c >= m:
            birth[c] = lam
    stability = dict.fromkeys(birth, 0.0)
    for p, c, lam, s in zip(parents, children, lambdas, sizes):  # a fixed order: the same sums everywhere
        stability[p] += (lam - birth[p]) * s
    kids: dict[int, list[int]] = {}
    for p, c in zip(parents, children):
        if c >= m:
            kids.setdefault(p, []).append(c)
    keep = {c: True for c in birth}
    # Children have larger labels than their parent: bottom up is by label, descending.
    for c in sorted(birth, reverse=True):
        if c == m:
            continue
        below = 0.0
        for child in kids.get(c, ()):
            below += stability[child]
        if below > stability[c]:
            keep[c] = False
            stability[c] = below
        else:
            todo = list(kids.get(c, ()))
            while todo:
                x = todo.pop()
                keep[x] = False
                todo.extend(kids.get(x, ()))
    return {c for c, kept in keep.items() if kept and c != m}


def _leaves(parents, children, m: int) -> set[int]:
    """The condensed tree's leaf clusters: those that no split divides further (never the root)."""
    split = {p for p, c in zip(parents, children) if c >= m}
    return {c for c in children if c >= m and c not in split}


def _label(parents, children, selected: set[int], m: int) -> np.ndarray:
    up = {c: p for p, c in zip(parents, children) if c >= m}
    raw = np.empty(m, dtype=np.int64)
    for p, c in zip(parents, children):
        if c >= m:
            continue
        x = p
        while x not in selected and x in up:
            x = up[x]
        raw[c] = x if x in selected else -1 - c  # noise: a label of its own
    # Numbered by first record.
    first: dict[int, int] = {}
    out = np.empty(m, dtype=np.int64)
    for r in range(m):
        out[r] = first.setdefault(int(raw[r]), len(first))
    return out
