"""Boxes: each worker's habits per edge learnt and undone, then a noise-weighted mean.

Workers draw boxes with habits: some always leave a margin on the right, some cut the feet.
Per worker and edge (left, top, right, bottom) the model learns a bias and a noise level, in
units of the worker's own box width (left, right) or height (top, bottom), from the worker's
boxes in real clusters against the reference (gold boxes on golden items, the fused box
elsewhere), each shrunk towards the crowd's value by `PRIOR_BOXES` pseudo-boxes. A cluster's
box is then the mean of its members' edges with their bias removed, weighted by the inverse
noise of each worker's edge. Before anything is learnt, the per-coordinate median.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .fusion import Objects
from .result import METHODS
from .shapes import FloatArray, box_iou, boxes_xyxy, xyxy_to_xywh

PRIOR_BOXES = 5.0
MIN_NOISE = 0.01
"""Floor of an edge's noise (1% of the box's size), so no worker's weight runs away."""


def paired_iou(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of a[i] with b[i] for every i."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _scale(corners: FloatArray) -> FloatArray:
    """Each box's width for its x edges and height for its y edges (at least one pixel)."""
    width = np.maximum(corners[:, 2] - corners[:, 0], 1.0)
    height = np.maximum(corners[:, 3] - corners[:, 1], 1.0)
    return np.c_[width, height, width, height]


class BoxKind:
    """Geometry kind `bbox` for the fusion loop (geometry: corners, one row per object)."""

    method = METHODS["bbox"]

    def __init__(self, n_workers: int, learn_habits: bool = True) -> None:
        self.learn_habits = learn_habits
        self.bias = np.zeros((n_workers, 4))
        self.noise = np.ones((n_workers, 4))
        self.fitted = False

    def parse(self, objects: Sequence[Mapping[str, Any]]) -> FloatArray:
        return boxes_xyxy(objects)

    def empty(self) -> FloatArray:
        return np.zeros((0, 4))

    def similarity(self, a: FloatArray, b: FloatArray, area: float) -> FloatArray:
        return box_iou(a, b)

    def paired(self, a: FloatArray, b: FloatArray, area: FloatArray) -> FloatArray:
        return paired_iou(a, b)

    def fit(self, objects: Objects, reference: FloatArray, weight: FloatArray, gold: np.ndarray) -> None:
        """Bias and noise per worker and edge from the boxes in real clusters.

        The crowd's common bias is not identifiable from agreement alone (the consensus moves
        with it), so the biases are centred to a zero weighted mean, and the crowd's offset
        from the gold convention is added back as learnt on golden boxes (none without)."""
        if not self.learn_habits or weight.sum() == 0:
            return
        n_workers = len(self.bias)
        others, spread_of_others, alone = self._others(objects)
        weight = np.where(gold | ~alone, weight, 0.0)
        if weight.sum() == 0:
            return
        target = np.where(gold[:, None], reference, others)
        residual = (objects.geometry - target) / _scale(objects.geometry)
        count = np.bincount(objects.worker, weight, minlength=n_workers)
        gold_weight = weight * gold
        for edge in range(4):
            r = residual[:, edge]
            crowd_bias = float((weight * r).sum() / weight.sum())
            total = np.bincount(objects.worker, weight * r, minlength=n_workers)
            bias = (total + PRIOR_BOXES * crowd_bias) / (count + PRIOR_BOXES)
            # Against the others' consensus, a residual also carries that consensus' own error:
            # subtract its expected square (none against gold) so noise is not overstated.
            squared = (r - bias[objects.worker]) ** 2 - np.where(gold, 0.0, spread_of_others[:, edge])
            crowd_noise = float((weight * squared).sum() / weight.sum())
            spread = np.bincount(objects.worker, weight * squared, minlength=n_workers)
            noise = np.sqrt(np.maximum((spread + PRIOR_BOXES * crowd_noise) / (count + PRIOR_BOXES), MIN_NOISE**2))
            precision = count / noise**2
            bias -= (precision * bias).sum() / precision.sum()
            offset = (gold_weight * (r - bias[objects.worker])).sum() / (gold_weight.sum() + PRIOR_BOXES)
            self.bias[:, edge] = bias + offset
            self.noise[:, edge] = noise
        self.fitted = True

    def _corrected(self, objects: Objects) -> tuple[FloatArray, FloatArray]:
        """Members' edges with their bias removed, and the weight of each edge."""
        if not self.fitted:
            return objects.geometry, np.ones_like(objects.geometry)
        corrected = objects.geometry - self.bias[objects.worker] * _scale(objects.geometry)
        return corrected, 1.0 / self.noise[objects.worker] ** 2

    def _others(self, objects: Objects) -> tuple[FloatArray, FloatArray, np.ndarray]:
        """For every box, the fused box of the other members of its cluster (leave one out:
        a worker judged against a consensus holding its own box would look better than it is
        and pull the consensus further its way), the expected squared error of that fused box
        per edge (0 until noise is learnt), and whether the box is alone in its cluster."""
        corrected, weight = self._corrected(objects)
        n_clusters = int(objects.cluster.max()) + 1 if len(objects.cluster) else 0
        others = np.zeros_like(corrected)
        spread = np.zeros_like(corrected)
        for edge in range(4):
            total = np.bincount(objects.cluster, weight[:, edge], minlength=n_clusters)
            value = np.bincount(objects.cluster, weight[:, edge] * corrected[:, edge], minlength=n_clusters)
            rest = total[objects.cluster] - weight[:, edge]
            mine = weight[:, edge] * corrected[:, edge]
            others[:, edge] = np.divide(value[objects.cluster] - mine, rest, out=np.zeros(len(rest)), where=rest > 0)
            if self.fitted:
                spread[:, edge] = np.divide(1.0, rest, out=np.zeros(len(rest)), where=rest > 0)
        alone = np.bincount(objects.cluster, minlength=n_clusters)[objects.cluster] < 2
        return others, spread, alone

    def fuse(self, objects: Objects, skills: FloatArray, n_clusters: int) -> FloatArray:
        """Per cluster: the median box until habits are learnt, then the weighted mean of
        the members' edges with their bias removed. Clusters without members get zeros."""
        result = np.zeros((n_clusters, 4))
        if not len(objects.cluster):
            return result
        if not self.fitted:
            medians = pd.DataFrame(objects.geometry).groupby(objects.cluster).median()
            result[medians.index.to_numpy()] = medians.to_numpy()
            return result
        corrected, weight = self._corrected(objects)
        for edge in range(4):
            total = np.bincount(objects.cluster, weight[:, edge], minlength=n_clusters)
            value = np.bincount(objects.cluster, weight[:, edge] * corrected[:, edge], minlength=n_clusters)
            result[:, edge] = np.divide(value, total, out=np.zeros(n_clusters), where=total > 0)
        # Keep corners ordered even if two corrections cross (a box thinner than its noise).
        result[:, [0, 2]] = np.sort(result[:, [0, 2]], axis=1)
        result[:, [1, 3]] = np.sort(result[:, [1, 3]], axis=1)
        return result

    def dump(self, geometry: FloatArray, size: tuple[float, float] | None) -> dict[str, Any]:
        corners = geometry.copy()
        if size is not None:
            corners[[0, 2]] = np.clip(corners[[0, 2]], 0.0, size[0])
            corners[[1, 3]] = np.clip(corners[[1, 3]], 0.0, size[1])
        return {"bbox": [round(float(v), 2) for v in xyxy_to_xywh(corners[None])[0]]}
