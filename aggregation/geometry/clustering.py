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
    label_values, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    several_labels = len(label_values) > 1
    # Running sums per cluster: similarity of every object to its members, members, labels.
    to_members = np.zeros((n, n))
    size = np.zeros(n)
    label_count = np.zeros((n, len(label_values)))
    n_clusters = 0

    def join(i: int, c: int) -> None:
        cluster[i] = c
        if c < n_gold and i >= n_gold:
            return  # a gold cluster is judged by its gold object alone
        to_members[:, c] += similarity[:, i]
        size[c] += 1
        label_count[c, codes[i]] += 1

    for g in range(n_gold):
        join(g, g)
    n_clusters = n_gold
    start = n_gold
    while start < n:
        stop = start
        while stop < n and owner[stop] == owner[start]:
            stop += 1
        mine = np.arange(start, stop)
        if n_clusters:
            mean_sim = to_members[mine, :n_clusters] / size[:n_clusters]
            score = mean_sim.copy()
            if several_labels:
                majority = label_count[:n_clusters].argmax(1)
                score += LABEL_BONUS * (codes[mine][:, None] == majority[None, :])
            score[mean_sim < threshold] = 0.0
            rows, cols = linear_sum_assignment(score, maximize=True)
            for r, c in zip(rows, cols, strict=True):
                if mean_sim[r, c] >= threshold:
                    join(int(mine[r]), int(c))
        for i in mine[cluster[mine] < 0]:
            join(int(i), n_clusters)
            n_clusters += 1
        start = stop
    return cluster
