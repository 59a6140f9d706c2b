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
from .shapes import FloatArray, IntArray, keypoint_areas, keypoints_of, oks, paired_oks, sigmas_for


def weighted_median(groups: IntArray, values: FloatArray, weights: FloatArray, n_groups: int) -> FloatArray:
    """Per group, the value at half the group's total weight (the midpoint of the two values
    around it when the halves split exactly); NaN for a group with no value."""
    order = np.lexsort((values, groups))
    g, v, w = groups[order], values[order], weights[order]
    cumulative = np.cumsum(w)
    total = np.bincount(g, w, minlength=n_groups)
    before = np.r_[0.0, np.cumsum(total)[:-1]]  # weight of the groups sorted before each one
    within = cumulative - before[g]
    half = total[g] / 2.0
    tolerance = 1e-12 * np.maximum(total[g], 1.0)
    reached = within >= half - tolerance
    first = np.full(n_groups, -1, dtype=np.int64)
    hit = np.flatnonzero(reached)
    # The first entry of each group that reaches half its weight (entries are grouped, so the
    # first hit per group is where the group id changes among the hits).
    starts = hit[np.r_[True, g[hit][1:] != g[hit][:-1]]] if len(hit) else hit
    first[g[starts]] = starts
    result = np.full(n_groups, np.nan)
    has = first >= 0
    i = first[has]
    value = v[i]
    exact = np.abs(within[i] - half[i]) <= tolerance[i]
    nxt = np.minimum(i + 1, len(v) - 1)
    same_group = (i + 1 < len(v)) & (g[nxt] == g[i])
    value = np.where(exact & same_group, (v[i] + v[nxt]) / 2.0, value)
    result[has] = value
    return result


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
        """Every cluster's keypoints at once (module docstring); unlabelled points are zeros."""
        n_points = self.n_points
        result = np.zeros((n_clusters, n_points, 3))
        if not len(objects.cluster) or not n_points:
            return result
        points = objects.geometry
        weight = skills[objects.worker]
        members = np.bincount(objects.cluster, weight, minlength=n_clusters)
        cell = objects.cluster[:, None] * n_points + np.arange(n_points)[None, :]  # (objects, points)
        labelled = points[:, :, 2] > 0
        w = np.broadcast_to(weight[:, None], labelled.shape)
        said = np.bincount(cell[labelled], w[labelled], minlength=n_clusters * n_points)
        seen = np.bincount(cell[points[:, :, 2] == 2], w[points[:, :, 2] == 2], minlength=n_clusters * n_points)
        keep = (said > 0) & (said >= np.repeat(members, n_points) / 2.0 - 1e-12)
        groups = cell[labelled]
        x = weighted_median(groups, points[:, :, 0][labelled], w[labelled], n_clusters * n_points)
        y = weighted_median(groups, points[:, :, 1][labelled], w[labelled], n_clusters * n_points)
        visibility = np.where(seen >= said / 2.0 - 1e-12, 2.0, 1.0)
        flat = np.c_[np.where(keep, x, 0.0), np.where(keep, y, 0.0), np.where(keep, visibility, 0.0)]
        return flat.reshape(n_clusters, n_points, 3)

    def dump(self, geometry: FloatArray, size: tuple[float, float] | None) -> dict[str, Any]:
        points = geometry.copy()
        if size is not None:
            points[:, 0] = np.clip(points[:, 0], 0.0, size[0])
            points[:, 1] = np.clip(points[:, 1], 0.0, size[1])
        return {"keypoints": [[round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in points]}
