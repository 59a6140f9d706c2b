"""Polygons: the region that a skill-weighted majority of a cluster's members covers.

Exact, on vectors rather than a raster: the members' outlines are noded together into the
faces of their overlay (shapely's `union_all` then `polygonize`), each face is kept when the
members whose polygon contains it carry at least half of the cluster's skill, and the kept
faces are merged. A merge in several pieces keeps its largest piece, holes are filled (an
answer is one ring), and outlines longer than `max_vertices` are simplified until they fit.
With no face kept (the members barely overlap), the most skilled member's polygon stands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely

from .fusion import Objects
from .result import METHODS
from .shapes import FloatArray, polygon_iou, polygons_of

DEFAULT_MAX_VERTICES = 200
SNAP = 0.01
"""Pixels: collinear vertices left where faces met are removed within this distance."""


def largest_ring(geometry: shapely.Geometry) -> shapely.Polygon:
    """The largest polygon of a polygonal geometry, without holes (empty if none)."""
    parts = [g for g in shapely.get_parts(geometry) if isinstance(g, shapely.Polygon) and not g.is_empty]
    if not parts:
        return shapely.Polygon()
    return shapely.Polygon(max(parts, key=lambda g: g.area).exterior)


def majority_region(members: Sequence[shapely.Geometry], weight: FloatArray) -> shapely.Geometry:
    """The union of the overlay's faces covered by at least half of the members' weight."""
    if len(members) == 1:
        return members[0]
    outlines = shapely.union_all([shapely.boundary(m) for m in members])
    faces = np.asarray(shapely.get_parts(shapely.polygonize(shapely.get_parts(outlines))), dtype=object)
    if not len(faces):
        return shapely.Polygon()
    inside = shapely.points(np.asarray([shapely.get_coordinates(shapely.point_on_surface(f))[0] for f in faces]))
    covered = shapely.contains(np.asarray(members, dtype=object)[:, None], inside[None, :])
    votes = weight @ covered
    kept = faces[votes >= weight.sum() / 2.0 - 1e-12]
    return shapely.union_all(kept) if len(kept) else shapely.Polygon()


def paired_polygon_iou(a: np.ndarray, b: np.ndarray) -> FloatArray:
    """IoU of a[i] with b[i] for every i."""
    if not len(a):
        return np.zeros(0)
    inter = shapely.area(shapely.intersection(a, b))
    union = shapely.area(a) + shapely.area(b) - inter
    return np.divide(inter, union, out=np.zeros(len(a)), where=union > 0)


def ring_points(polygon: shapely.Polygon, max_vertices: int, size: tuple[float, float] | None) -> list[list[float]]:
    """A polygon as a valid ring of at most `max_vertices` points rounded to 0.01 px (inside
    the image when its size is known)."""
    if size is not None:
        polygon = largest_ring(shapely.intersection(polygon, shapely.box(0.0, 0.0, size[0], size[1])))
    tolerance = SNAP
    shape = polygon
    while True:
        shape = largest_ring(shapely.simplify(polygon, tolerance, preserve_topology=True))
        coords = np.round(np.asarray(shape.exterior.coords)[:-1], 2) if not shape.is_empty else np.zeros((0, 2))
        rounded = shapely.Polygon(coords) if len(coords) >= 3 else shapely.Polygon()
        if len(coords) <= max_vertices and rounded.is_valid and rounded.area > 0:
            return coords.tolist()
        if tolerance > max(polygon.length, 1.0):
            hull = np.round(np.asarray(shapely.convex_hull(polygon).exterior.coords)[:-1], 2)
            return hull.tolist()
        tolerance *= 2.0


class PolygonKind:
    """Geometry kind `polygon` for the fusion loop (geometry: an object array of polygons)."""

    method = METHODS["polygon"]

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.max_vertices = int(spec.get("max_vertices", DEFAULT_MAX_VERTICES))

    def parse(self, objects: Sequence[Mapping[str, Any]]) -> np.ndarray:
        result = np.empty(len(objects), dtype=object)
        result[:] = polygons_of(objects)
        return result

    def empty(self) -> np.ndarray:
        return np.empty(0, dtype=object)

    def similarity(self, a: np.ndarray, b: np.ndarray, area: float) -> FloatArray:
        return polygon_iou(list(a), list(b))

    def paired(self, a: np.ndarray, b: np.ndarray, area: FloatArray) -> FloatArray:
        return paired_polygon_iou(a, b)

    def fit(self, objects: Objects, reference: np.ndarray, weight: FloatArray, gold: np.ndarray) -> None:
        """Nothing to learn beyond the skills the loop passes to `fuse`."""

    def fuse(self, objects: Objects, skills: FloatArray, n_clusters: int) -> np.ndarray:
        result = np.empty(n_clusters, dtype=object)
        result[:] = [shapely.Polygon()] * n_clusters
        order = np.argsort(objects.cluster, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(objects.cluster[order]) != 0, True])
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            rows = order[start:stop]
            if not len(rows):
                continue
            members, weight = list(objects.geometry[rows]), skills[objects.worker[rows]]
            region = largest_ring(majority_region(members, weight))
            if region.is_empty:
                region = largest_ring(members[int(np.argmax(weight))])
            result[objects.cluster[rows[0]]] = region
        return result

    def dump(self, geometry: shapely.Geometry, size: tuple[float, float] | None) -> dict[str, Any]:
        return {"points": ring_points(geometry, self.max_vertices, size)}


__all__ = ["PolygonKind", "majority_region"]
