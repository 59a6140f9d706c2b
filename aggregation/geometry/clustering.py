"""Objects of several answers to one item grouped into clusters, one object per worker each.

Workers are taken in a fixed order; each worker's objects are matched to the clusters so far
by the Hungarian method on the mean similarity to a cluster's members (a gold object, when
the item is golden, stands alone for its cluster), and an object that matches none starts a
cluster of its own. A small bonus for the same label breaks near-ties between neighbouring
objects of different classes; it never lets a pair below the threshold match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .shapes import FloatArray, IntArray

LABEL_BONUS = 0.05


def cluster_objects(
    similarity: FloatArray,
    owner: IntArray,
    labels: Sequence[str],
    threshold: float,
    n_gold: int = 0,
) -> IntArray:
    """Cluster id of every object of one item.

    `similarity` is square over the item's objects; the first `n_gold` are the gold objects
    (each its own cluster, ids 0..n_gold-1), the rest belong to `owner` (worker codes, the
    gold's are ignored) in the order workers are taken. Objects of one worker never share a
    cluster."""
    n = len(owner)
    cluster = np.full(n, -1, dtype=np.int64)
    cluster[:n_gold] = np.arange(n_gold)
    n_clusters = n_gold
    label_arr = np.asarray(labels, dtype=object)
    start = n_gold
    while start < n:
        stop = start
        while stop < n and owner[stop] == owner[start]:
            stop += 1
        mine = np.arange(start, stop)
        if n_clusters:
            assigned = np.flatnonzero(cluster >= 0)
            members = np.zeros((n_clusters, n))
            members[cluster[assigned], assigned] = 1.0
            gold_clusters = np.zeros(n_clusters, dtype=bool)
            gold_clusters[:n_gold] = True
            # A gold cluster is judged by its gold object alone; the others by all members.
            members[gold_clusters] = 0.0
            members[np.arange(n_gold), np.arange(n_gold)] = 1.0
            mean_sim = (similarity[mine] @ members.T) / members.sum(1)[None, :]
            majority_label = np.array([_label_of(label_arr[members[c] > 0]) for c in range(n_clusters)], dtype=object)
            bonus = LABEL_BONUS * (label_arr[mine][:, None] == majority_label[None, :])
            score = np.where(mean_sim >= threshold, mean_sim + bonus, 0.0)
            rows, cols = linear_sum_assignment(score, maximize=True)
            ok = mean_sim[rows, cols] >= threshold
            cluster[mine[rows[ok]]] = cols[ok]
        for i in mine[cluster[mine] < 0]:
            cluster[i] = n_clusters
            n_clusters += 1
        start = stop
    return cluster


def _label_of(labels: np.ndarray) -> str:
    """The most frequent label among a cluster's members (first seen on ties)."""
    values, first, counts = np.unique(labels.astype(str), return_index=True, return_counts=True)
    best = np.lexsort((first, -counts))[0]
    return str(values[best])
