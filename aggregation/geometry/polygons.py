"""Polygons: the region that a skill-weighted majority of a cluster's members covers.

Exact, on vectors rather than a raster: the members' outlines are noded together into the
faces of their overlay (shapely's `union_all` then `polygonize`), each face is kept when the
members whose polygon contains it carry at least half of the cluster's skill, and the kept
faces are merged. An object drawn in several parts (`polygons`) is the union of its parts.
A merge in several pieces keeps as many of its largest pieces as the members drew parts
(the skill-weighted median of their part counts: one piece when they drew single rings),
holes are filled (an answer is rings), and outlines longer than `max_vertices` are simplified
until they fit. With no face kept (the members barely overlap), the most skilled member's
polygon stands. A fused object in one piece is written as `points`, in several as `polygons`.
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
SNAP = 0.25
"""Pixels: vertices the overlay leaves within a quarter pixel of the outline are dropped."""


def pieces(geometry: shapely.Geometry) -> list[shapely.Polygon]:
    """The non-empty polygons of a polygonal geometry, largest first."""
    parts = [g for g in shapely.get_parts(geometry) if isinstance(g, shapely.Polygon) and not g.is_empty]
    return sorted(parts, key=lambda g: g.area, reverse=True)


def largest_rings(geometry: shapely.Geometry, count: int) -> shapely.Geometry:
    """The `count` largest polygons of a polygonal geometry, without holes: a Polygon for one
    (empty if none), a MultiPolygon for several."""
    rings = [shapely.Polygon(g.exterior) for g in pieces(geometry)[:count]]
    if len(rings) > 1:
        return shapely.MultiPolygon(rings)
    return rings[0] if rings else shapely.Polygon()


def largest_ring(geometry: shapely.Geometry) -> shapely.Polygon:
    """The largest polygon of a polygonal geometry, without holes (empty if none)."""
    ring: shapely.Polygon = largest_rings(geometry, 1)
    return ring


def parts_to_keep(members: Sequence[shapely.Geometry], weight: FloatArray) -> int:
    """How many pieces a fused object keeps: the skill-weighted (lower) median of its members'
    part counts, so slivers of a majority region are dropped as before while an object that
    most drew in two parts stays in two."""
    counts = np.asarray([max(1, len(pieces(m))) for m in members])
    order = np.argsort(counts, kind="stable")
    cumulative = np.cumsum(weight[order])
    return int(counts[order][np.searchsorted(cumulative, cumulative[-1] / 2.0 - 1e-12)])


class Overlay:
    """The faces of the members' overlay and which members cover each face (computed once
    per cluster; only the weights change between rounds of the fusion loop)."""

    def __init__(self, members: Sequence[shapely.Geometry]) -> None:
        self.members = list(members)
        outlines = shapely.union_all([shapely.boundary(m) for m in members])
        self.faces = np.asarray(shapely.get_parts(shapely.polygonize(shapely.get_parts(outlines))), dtype=object)
        inside = shapely.point_on_surface(self.faces)
        self.covered = shapely.contains(np.asarray(members, dtype=object)[:, None], inside[None, :])
        self._regions: dict[bytes, shapely.Geometry] = {}

    def region(self, weight: FloatArray) -> shapely.Geometry:
        """The union of the faces covered by at least half of the members' weight."""
        if len(self.members) == 1:
            return self.members[0]
        kept = (weight @ self.covered) >= weight.sum() / 2.0 - 1e-12
        key = kept.tobytes()
        if key not in self._regions:
            # The faces tile the plane without overlaps: a coverage union is exact and ~10x faster.
            self._regions[key] = shapely.coverage_union_all(self.faces[kept]) if kept.any() else shapely.Polygon()
        return self._regions[key]


def majority_region(members: Sequence[shapely.Geometry], weight: FloatArray) -> shapely.Geometry:
    """The union of the overlay's faces covered by at least half of the members' weight."""
    return Overlay(members).region(weight)


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
        self._overlays: dict[int, Overlay] = {}

    def parse(self, objects: Sequence[Mapping[str, Any]]) -> np.ndarray:
        result = np.empty(len(objects), dtype=object)
        result[:] = polygons_of(objects)
        return result

    def empty(self) -> np.ndarray:
        return np.empty(0, dtype=object)

    def similarity(self, a: np.ndarray, b: np.ndarray, area: float) -> FloatArray:
        return polygon_iou(a, a) if a is b else polygon_iou(a, b)

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
            cluster = int(objects.cluster[rows[0]])
            members, weight = list(objects.geometry[rows]), skills[objects.worker[rows]]
            if cluster not in self._overlays:
                self._overlays[cluster] = Overlay(members)
            count = parts_to_keep(members, weight)
            region = largest_rings(shapely.simplify(self._overlays[cluster].region(weight), SNAP), count)
            if region.is_empty:
                region = largest_rings(members[int(np.argmax(weight))], count)
            result[cluster] = region
        return result

    def dump(self, geometry: shapely.Geometry, size: tuple[float, float] | None) -> dict[str, Any]:
        """`points` for a shape in one piece (in the image), `polygons` for several."""
        parts = pieces(geometry)
        if size is not None:
            image = shapely.box(0.0, 0.0, size[0], size[1])
            parts = [part for part in parts if shapely.intersection(part, image).area > 0]
        if len(parts) <= 1:
            return {"points": ring_points(geometry, self.max_vertices, size)}
        return {"polygons": [ring_points(part, self.max_vertices, size) for part in parts]}


__all__ = ["PolygonKind", "majority_region"]
