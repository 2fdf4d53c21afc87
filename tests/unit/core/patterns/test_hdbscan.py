"""HDBSCAN of a calibration sample in integer arithmetic (streams.core.patterns.hdbscan)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from streams.core.patterns.calibration import gram
from streams.core.patterns.hdbscan import hdbscan


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def partition(labels) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, label in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(label, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def separated(sizes: list[int], dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres, _ = np.linalg.qr(rng.normal(size=(dim, len(sizes))))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = centres.T[truth] + spread * rng.normal(size=(len(truth), dim))
    order = rng.permutation(len(truth))
    return unit_rows(x[order]), truth[order]


@pytest.mark.parametrize("smallest", [2, 3, 5])
def test_separated_groups_are_found_whatever_their_sizes(smallest):
    # Tight groups of very different sizes: a threshold would need to fit all of them; density does.
    x, truth = separated([5, 8, 20, 40], 32, 0.05, seed=1)
    assert partition(hdbscan(gram(x), smallest)) == partition(truth)


def test_a_record_in_no_dense_group_stays_alone():
    # Farther from every group than the groups are from each other: it leaves before any group is
    # born. (A record that leaves a group after the group is born belongs to it, as in HDBSCAN.)
    x, truth = separated([6, 6, 6], 16, 0.05, seed=2)
    stray = unit_rows(-x.sum(axis=0, keepdims=True))
    labels = hdbscan(gram(np.vstack([x, stray])), 2)
    assert int((labels == labels[-1]).sum()) == 1
    assert partition(labels[:-1]) == partition(truth)


def test_labels_are_numbered_by_first_record_and_are_the_same_on_every_call():
    x, _ = separated([4, 7, 3, 9], 24, 0.3, seed=4)
    g = gram(x)
    labels = hdbscan(g, 2)
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in range(int(labels.max()) + 1)]
    assert firsts == sorted(firsts) and labels[0] == 0
    assert (hdbscan(g.copy(), 2) == labels).all()


def test_duplicates_and_tiny_samples_are_defined():
    same = np.repeat(unit_rows(np.ones((1, 8))), 10, axis=0)
    # Ten copies of one record: one group, which is the root, and the root is never a finding.
    assert len(set(hdbscan(gram(same), 2).tolist())) == 10
    assert hdbscan(gram(same[:2]), 2).tolist() == [0, 1]
    with pytest.raises(ValueError, match="min_cluster_size"):
        hdbscan(gram(same), 1)


def test_two_groups_on_a_circle_with_a_gap_split_at_the_gap():
    # Records every 2 degrees from 0 to 40 and from 60 to 100: chains a leader threshold cuts into
    # pieces (members 40 degrees apart) are each one dense group.
    angles = [math.radians(a) for a in list(range(0, 41, 2)) + list(range(60, 101, 2))]
    x = np.array([[math.cos(a), math.sin(a), 0.0] for a in angles], dtype=np.float32)
    labels = hdbscan(gram(x), 3)
    assert partition(labels) == {frozenset(range(21)), frozenset(range(21, 42))}


@pytest.mark.parametrize("seed", range(6))
def test_it_is_scikit_learns_hdbscan_on_the_same_distances(seed):
    # The reference: scikit-learn (a benchmark-only dependency) with min_samples = min_cluster_size,
    # on the Euclidean distance between the unit rows (its default metric): the chord, whose inverse
    # weighs the stabilities. With two records per group at least, tie-breaking never mattered on
    # these samples; with more, equal mutual reachability distances may be linked in another order.
    cluster = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(seed)
    k = int(rng.integers(5, 40))
    x = rng.normal(size=(k, 20))[rng.integers(k, size=200)] + rng.uniform(0.3, 1.5) * rng.normal(size=(200, 20))
    g = gram(unit_rows(x))
    d = np.sqrt(np.maximum(2.0 * (1.0 - g / 2.0**20), 0.0))
    np.fill_diagonal(d, 0.0)
    theirs = cluster.HDBSCAN(min_cluster_size=2, metric="precomputed", copy=True).fit_predict(d)
    theirs = np.where(theirs < 0, -1 - np.arange(len(theirs)), theirs)  # noise: alone
    assert partition(hdbscan(g, 2)) == partition(theirs)


@pytest.mark.parametrize("seed", range(6))
def test_min_samples_apart_and_leaf_clusters_are_scikit_learns(seed):
    # A regroup's setting (calibration.fine_groups): groups of 3 records or more, core distances at
    # the nearest neighbour, the condensed tree's leaves. Same reference as above.
    cluster = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(5, 40))
    x = rng.normal(size=(k, 20))[rng.integers(k, size=200)] + rng.uniform(0.3, 1.5) * rng.normal(size=(200, 20))
    g = gram(unit_rows(x))
    d = np.sqrt(np.maximum(2.0 * (1.0 - g / 2.0**20), 0.0))
    np.fill_diagonal(d, 0.0)
    for method in ("eom", "leaf"):
        theirs = cluster.HDBSCAN(min_cluster_size=3, min_samples=2, metric="precomputed", copy=True,
                                 cluster_selection_method=method).fit_predict(d)
        theirs = np.where(theirs < 0, -1 - np.arange(len(theirs)), theirs)
        assert partition(hdbscan(g, 3, min_samples=2, leaves=method == "leaf")) == partition(theirs)


def test_leaves_are_the_finest_groups_and_never_the_root():
    # Arcs of a circle, a record every 2 degrees: A and B 3 degrees apart, C 60 degrees further.
    # Excess of mass keeps A and B as one cluster (their union outlasts the two); the leaves are
    # the three arcs. One group alone is the root, which is never a finding.
    a = [2 * i for i in range(6)]
    b = [a[-1] + 3 + 2 * i for i in range(6)]
    c = [b[-1] + 60 + 2 * i for i in range(6)]
    x = np.array([[math.cos(math.radians(t)), math.sin(math.radians(t)), 0.0] for t in a + b + c], dtype=np.float32)
    arcs = {frozenset(range(6)), frozenset(range(6, 12)), frozenset(range(12, 18))}
    assert partition(hdbscan(gram(x), 3, min_samples=2)) == {frozenset(range(12)), frozenset(range(12, 18))}
    assert partition(hdbscan(gram(x), 3, min_samples=2, leaves=True)) == arcs
    same = np.repeat(unit_rows(np.ones((1, 8))), 10, axis=0)
    assert len(set(hdbscan(gram(same), 3, min_samples=2, leaves=True).tolist())) == 10
