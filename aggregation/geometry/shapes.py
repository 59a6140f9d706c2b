"""Objects of an answer as arrays, and the similarity of two sets of objects (IoU, OKS).

One place for the geometry every other module reads: boxes as corner arrays, polygons as
shapely polygons, keypoints as (points, 3) arrays, and their pairwise similarity matrices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

GEOMETRY_KINDS = ("bbox", "polygon", "keypoints")
KINDS = ("classification", "multilabel", *GEOMETRY_KINDS)

# COCO's per-keypoint sigmas for the 17 person keypoints (cocoapi, cocoeval.py).
COCO_PERSON_SIGMAS: dict[str, float] = {
    "nose": 0.026,
    "left_eye": 0.025,
    "right_eye": 0.025,
    "left_ear": 0.035,
    "right_ear": 0.035,
    "left_shoulder": 0.079,
    "right_shoulder": 0.079,
    "left_elbow": 0.072,
    "right_elbow": 0.072,
    "left_wrist": 0.062,
    "right_wrist": 0.062,
    "left_hip": 0.107,
    "right_hip": 0.107,
    "left_knee": 0.087,
    "right_knee": 0.087,
    "left_ankle": 0.089,
    "right_ankle": 0.089,
}
DEFAULT_SIGMA = float(np.mean(list(COCO_PERSON_SIGMAS.values())))
"""For a named point that is not one of COCO's and has no sigma in the spec."""

DEFAULT_IOU_THRESHOLD = 0.5
DEFAULT_OKS_THRESHOLD = 0.5


def objects_of(value: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The objects of an answer or gold value (an empty list is a real, empty answer)."""
    if value is None:
        return []
    objects = value.get("objects")
    return list(objects) if objects is not None else []


def labels_of(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each object's label as a string ("" when the object has none)."""
    return [str(o.get("label", "")) for o in objects]


# ---- boxes -----------------------------------------------------------------------------------


def boxes_xyxy(objects: Sequence[Mapping[str, Any]]) -> FloatArray:
    """Boxes `[x, y, w, h]` as corners (n, 4): x1, y1, x2, y2 (negative sizes normalised)."""
    if not objects:
        return np.zeros((0, 4))
    xywh = np.asarray([o["bbox"] for o in objects], dtype=np.float64).reshape(-1, 4)
    x1 = np.minimum(xywh[:, 0], xywh[:, 0] + xywh[:, 2])
    y1 = np.minimum(xywh[:, 1], xywh[:, 1] + xywh[:, 3])
    return np.c_[x1, y1, x1 + np.abs(xywh[:, 2]), y1 + np.abs(xywh[:, 3])]


def xyxy_to_xywh(corners: FloatArray) -> FloatArray:
    """Corners back to `[x, y, w, h]`."""
    return np.c_[corners[:, 0], corners[:, 1], corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]]


def box_iou(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of every box in `a` with every box in `b` (corners); 0 where the union is empty."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# ---- polygons --------------------------------------------------------------------------------


def as_polygon(points: Sequence[Sequence[float]]) -> shapely.Geometry:
    """A valid polygonal geometry from a ring of points (a self-intersecting ring is repaired
    by `make_valid`; anything without area becomes an empty polygon)."""
    coords = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(coords) < 3:
        return shapely.Polygon()
    polygon = shapely.Polygon(coords)
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
        parts = [g for g in shapely.get_parts(polygon) if g.geom_type in ("Polygon", "MultiPolygon")]
        polygon = shapely.union_all(parts) if parts else shapely.Polygon()
    return polygon


def object_polygon(obj: Mapping[str, Any]) -> shapely.Geometry:
    """An object's region: its ring (`points`), or the union of its parts (`polygons`: an
    object in several pieces, e.g. a car split by a pole), so IoU is that of the unions."""
    if "polygons" in obj:
        return shapely.union_all([as_polygon(part) for part in obj["polygons"]])
    return as_polygon(obj["points"])


def polygons_of(objects: Sequence[Mapping[str, Any]]) -> list[shapely.Geometry]:
    """The objects' regions (`points` or `polygons`), repaired where needed."""
    return [object_polygon(o) for o in objects]


def polygon_iou(a: Sequence[shapely.Geometry] | np.ndarray, b: Sequence[shapely.Geometry] | np.ndarray) -> FloatArray:
    """IoU of every polygon in `a` with every polygon in `b` (areas by shapely); pass the
    same object twice for a set against itself."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    left = np.asarray(a, dtype=object)[:, None]
    right = np.asarray(b, dtype=object)[None, :]
    # Bounding boxes first: most pairs do not overlap at all and need no intersection.
    ba, bb = np.asarray(shapely.bounds(list(a))), np.asarray(shapely.bounds(list(b)))
    touch = (np.minimum(ba[:, None, 2], bb[None, :, 2]) > np.maximum(ba[:, None, 0], bb[None, :, 0])) & (
        np.minimum(ba[:, None, 3], bb[None, :, 3]) > np.maximum(ba[:, None, 1], bb[None, :, 1])
    )
    same = a is b
    if same:  # a set against itself: the upper triangle only, mirrored (intersections are slow)
        touch &= np.triu(np.ones_like(touch), k=1)
    result = np.zeros((len(a), len(b)))
    if touch.any():
        la, rb = np.broadcast_arrays(left, right)
        inter = shapely.area(shapely.intersection(la[touch], rb[touch]))
        union = shapely.area(la[touch]) + shapely.area(rb[touch]) - inter
        result[touch] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    if same:
        result = result + result.T
        np.fill_diagonal(result, (shapely.area(list(a)) > 0).astype(np.float64))
    return result


# ---- keypoints -------------------------------------------------------------------------------


def keypoints_of(objects: Sequence[Mapping[str, Any]], n_points: int | None = None) -> FloatArray:
    """Keypoints as (objects, points, 3): x, y, v; missing trailing points count as v = 0."""
    if not objects:
        return np.zeros((0, n_points or 0, 3))
    rows = [np.asarray(o["keypoints"], dtype=np.float64).reshape(-1, 3) for o in objects]
    width = n_points if n_points is not None else max(len(r) for r in rows)
    out = np.zeros((len(rows), width, 3))
    for i, r in enumerate(rows):
        out[i, : min(len(r), width)] = r[:width]
    return out


def sigmas_for(spec: Mapping[str, Any], n_points: int) -> FloatArray:
    """Per-point sigmas: the spec's `sigmas`, else COCO's by point name, else COCO's mean."""
    given = spec.get("sigmas")
    if given is not None:
        return np.asarray(given, dtype=np.float64).reshape(-1)[:n_points]
    names = [str(name) for name in spec.get("points") or []]
    names += [""] * (n_points - len(names))
    return np.asarray([COCO_PERSON_SIGMAS.get(name, DEFAULT_SIGMA) for name in names[:n_points]])


def keypoint_areas(points: FloatArray, fallback: float | FloatArray) -> FloatArray:
    """Object scale s^2 for OKS: the area of the bounding box of each object's labelled points;
    `fallback` (the image's area when known) when that box has no area."""
    areas = np.broadcast_to(np.asarray(fallback, dtype=np.float64), (len(points),)).copy()
    for i, obj in enumerate(points):
        seen = obj[obj[:, 2] > 0]
        if len(seen) >= 2:
            area = float(np.ptp(seen[:, 0]) * np.ptp(seen[:, 1]))
            if area > 0:
                areas[i] = area
    return areas


def oks(answer: FloatArray, gold: FloatArray, sigmas: FloatArray, gold_areas: FloatArray) -> FloatArray:
    """COCO object keypoint similarity of every answer object with every gold object.

    Mean over the gold object's labelled points (v > 0) of exp(-d^2 / (2 s^2 (2 sigma)^2));
    a point the answer did not label (v = 0) contributes 0. A gold object with no labelled
    point is matched by an answer with none (1.0) and by nothing else (0.0)."""
    if not len(answer) or not len(gold):
        return np.zeros((len(answer), len(gold)))
    return paired_oks(answer[:, None], gold[None, :], sigmas, gold_areas[None, :])


def paired_oks(answer: FloatArray, gold: FloatArray, sigmas: FloatArray, gold_areas: FloatArray) -> FloatArray:
    """OKS of answer[i] with gold[i] for broadcastable stacks (..., points, 3); see `oks`."""
    k2 = (2.0 * sigmas) ** 2
    gold_seen = gold[..., 2] > 0
    answer_seen = answer[..., 2] > 0
    d2 = ((answer[..., :2] - gold[..., :2]) ** 2).sum(-1)
    e = np.exp(-d2 / (2.0 * np.maximum(gold_areas, 1e-9)[..., None] * k2))
    e = np.where(answer_seen & gold_seen, e, 0.0).sum(-1)
    count = np.broadcast_to(gold_seen.sum(-1), e.shape)
    none_labelled = np.broadcast_to(~answer_seen.any(-1), e.shape).astype(np.float64)
    return np.where(count > 0, e / np.maximum(count, 1), none_labelled)
