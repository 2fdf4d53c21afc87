"""Clustering agreement scores for labelled streams: adjusted Rand index and normalized mutual information.

Plain numpy over the contingency table, so the demo and the benchmarks need no scikit-learn.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def contingency(truth: Sequence, predicted: Sequence) -> tuple[np.ndarray, list, list]:
    rows = sorted(set(truth), key=str)
    cols = sorted(set(predicted), key=str)
    ri = {v: i for i, v in enumerate(rows)}
    ci = {v: i for i, v in enumerate(cols)}
    table = np.zeros((len(rows), len(cols)), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        table[ri[t], ci[p]] += 1
    return table, rows, cols


def _pairs(x: np.ndarray) -> float:
    return float((x * (x - 1) // 2).sum())


def adjusted_rand_index(truth: Sequence, predicted: Sequence) -> float:
    table, _, _ = contingency(truth, predicted)
    n = int(table.sum())
    if n < 2:
        return 1.0
    index = _pairs(table)
    a, b = _pairs(table.sum(axis=1)), _pairs(table.sum(axis=0))
    expected = a * b / (n * (n - 1) / 2)
    maximum = (a + b) / 2
    if maximum == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return (index - expected) / (maximum - expected)


def normalized_mutual_information(truth: Sequence, predicted: Sequence) -> float:
    """NMI with the arithmetic-mean normalization (scikit-learn's default)."""
    table, _, _ = contingency(truth, predicted)
    n = table.sum()
    if n == 0:
        return 1.0
    p = table / n
    pr, pc = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pr, pc)[nz])).sum())
    hr = -float((pr[pr > 0] * np.log(pr[pr > 0])).sum())
    hc = -float((pc[pc > 0] * np.log(pc[pc > 0])).sum())
    if hr == 0 and hc == 0:
        return 1.0
    denom = (hr + hc) / 2
    return 0.0 if denom == 0 else max(0.0, mi / denom)


def purity(truth: Sequence, predicted: Sequence) -> float:
    table, _, _ = contingency(truth, predicted)
    return float(table.max(axis=0).sum() / max(1, table.sum()))
