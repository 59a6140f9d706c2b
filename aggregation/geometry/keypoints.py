"""Keypoints: per point a skill-weighted median of the answers that labelled it, visibility by vote.

Objects (people, say) are clustered by OKS like boxes by IoU. In a cluster, a point is
labelled when the workers who labelled it (v > 0) carry at least half the skill of the
cluster's members; its x and y are then the skill-weighted medians over those workers, and it
is visible (v = 2) when those who marked it visible carry at least half of their skill,
occluded (v = 1) otherwise. A point left unlabelled is [0, 0, 0].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .fusion import Objects
from .result import METHODS
from .shapes import FloatArray, keypoint_areas, keypoints_of, oks, paired_oks, sigmas_for


def weighted_median(values: FloatArray, weights: FloatArray) -> float:
    """The value at half the total weight (the midpoint when the halves split exactly)."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cumulative = np.cumsum(w)
    half = cumulative[-1] / 2.0
    i = int(np.searchsorted(cumulative, half - 1e-12 * cumulative[-1]))
    if abs(cumulative[i] - half) <= 1e-12 * cumulative[-1] and i + 1 < len(v):
        return float((v[i] + v[i + 1]) / 2.0)
    return float(v[i])


def count_points(spec: Mapping[str, Any], values: Sequence[Mapping[str, Any]]) -> int:
    """Points per object: the spec's named points, else the most any object has."""
    named = len(spec.get("points") or [])
    if named:
        return named
    lengths = [len(o.get("keypoints") or []) for v in values for o in (v.get("objects") or [])]
    return max(lengths, default=0)


class KeypointKind:
    """Geometry kind `keypoints` for the fusion loop (geometry: (objects, points, 3))."""

    method = METHODS["keypoints"]

    def __init__(self, spec: Mapping[str, Any], n_points: int) -> None:
        self.n_points = n_points
        self.sigmas = sigmas_for(spec, n_points)

    def parse(self, objects: Sequence[Mapping[str, Any]]) -> FloatArray:
        return keypoints_of(objects, self.n_points)

    def empty(self) -> FloatArray:
        return np.zeros((0, self.n_points, 3))

    def similarity(self, a: FloatArray, b: FloatArray, area: float) -> FloatArray:
        """OKS both ways, averaged (each side scaled by the other's objects)."""
        forward = oks(a, b, self.sigmas, keypoint_areas(b, area))
        backward = oks(b, a, self.sigmas, keypoint_areas(a, area))
        return (forward + backward.T) / 2.0

    def paired(self, a: FloatArray, b: FloatArray, area: FloatArray) -> FloatArray:
        return paired_oks(a, b, self.sigmas, keypoint_areas(b, area))

    def fit(self, objects: Objects, reference: FloatArray, weight: FloatArray, gold: np.ndarray) -> None:
        """Nothing to learn beyond the skills the loop passes to `fuse`."""

    def fuse(self, objects: Objects, skills: FloatArray, n_clusters: int) -> FloatArray:
        result = np.zeros((n_clusters, self.n_points, 3))
        order = np.argsort(objects.cluster, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(objects.cluster[order]) != 0, True])
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            rows = order[start:stop]
            if not len(rows):
                continue
            result[objects.cluster[rows[0]]] = self._fuse_one(objects.geometry[rows], skills[objects.worker[rows]])
        return result

    def _fuse_one(self, points: FloatArray, weight: FloatArray) -> FloatArray:
        """One cluster's keypoints from its members' (members, points, 3)."""
        fused = np.zeros((self.n_points, 3))
        total = weight.sum()
        for p in range(self.n_points):
            labelled = points[:, p, 2] > 0
            if weight[labelled].sum() < total / 2.0 or not labelled.any():
                continue
            w = weight[labelled]
            visible = weight[points[:, p, 2] == 2].sum() >= w.sum() / 2.0
            x, y = weighted_median(points[labelled, p, 0], w), weighted_median(points[labelled, p, 1], w)
            fused[p] = (x, y, 2 if visible else 1)
        return fused

    def dump(self, geometry: FloatArray, size: tuple[float, float] | None) -> dict[str, Any]:
        points = geometry.copy()
        if size is not None:
            points[:, 0] = np.clip(points[:, 0], 0.0, size[0])
            points[:, 1] = np.clip(points[:, 1], 0.0, size[1])
        return {"keypoints": [[round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in points]}
