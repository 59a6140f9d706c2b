"""The checks every annotation answer passes before it is stored: a worker's on submit, a golden
item's known answer on upload. One place for each rule, so both refuse alike.

An answer to a `multilabel` job is `{"labels": [...]}` (a set of the job's labels, possibly
empty); to a `bbox`, `polygon` or `keypoints` job `{"objects": [...]}` (an empty list means
"nothing to draw", a real answer). Each object has a `label` of the job's and its geometry in
pixels of the item's image (`data.width`, `data.height`):

- `bbox`: `[x, y, w, h]`, positive sizes at least the job's `min_size`, inside the image;
- `polygon`: `points` `[[x, y], ...]`, between `min_vertices` and `max_vertices` corners inside
  the image, a valid ring with an area (not self-intersecting: shapely decides); or `polygons`
  `[[[x, y], ...], ...]`, the disjoint parts of one object (a car split by a pole), each checked
  as a ring is, and no two overlapping (an overlap is one part drawn twice, and would count
  twice in the object's area);
- `keypoints`: `[[x, y, v], ...]`, one per named point, v as in COCO (0 not labelled, 1 occluded,
  2 visible); labelled points inside the image, at least one labelled.

"Inside" allows 1 pixel past each edge (a drag that ends on the border). A refusal is an
`Invalid` naming the place, e.g. `answers.0.objects.3.bbox: outside the image (x + w = 1300 >
width 1280)`. Classification labels are checked where they are stored (`pool/submit.py`).
"""

from __future__ import annotations

import math
from typing import Any

import shapely

from marketplace.errors import Invalid
from marketplace.settings import CLASSIFICATION, MULTILABEL, AnnotationSpec

EDGE_TOLERANCE = 1.0  # pixels past an edge still taken as inside
MAX_PARTS = 100  # polygons of one object
VISIBILITY = (0, 1, 2)


def image_size(data: Any) -> tuple[float, float] | None:
    """The item's image size from its data (`width`, `height`: positive numbers), or None."""
    if not isinstance(data, dict):
        return None
    width: Any = data.get("width")
    height: Any = data.get("height")
    if not (_number(width) and _number(height)):
        return None
    size = float(width), float(height)
    return size if min(size) > 0 else None


def check_item_data(spec: AnnotationSpec, data: Any, where: str) -> None:
    """Items of geometry jobs carry their image's size: boxes are checked and exported by it."""
    if spec.is_geometry and image_size(data) is None:
        raise Invalid(
            f"{where}.data.width",
            f"items of a {spec.kind} job need the image's width and height in pixels (positive numbers) in data",
        )


def check_value(spec: AnnotationSpec, value: Any, size: tuple[float, float] | None, where: str) -> dict[str, Any]:
    """A non-classification answer checked against the job's annotation: the value to store
    (`{"labels"}` or `{"objects"}`, exactly as sent), or an Invalid naming the first bad place.
    `where` is the path of the answer (its fields are named below it)."""
    if spec.kind == CLASSIFICATION:
        raise ValueError("classification answers are labels")
    if not isinstance(value, dict):
        raise Invalid(where, f"a {spec.kind} answer is an object with {spec.answer_field!r}")
    key = spec.answer_field
    for name in sorted(value):
        if name != key:
            raise Invalid(f"{where}.{name}", f"not part of a {spec.kind} answer (it holds {key!r})")
    if key not in value:
        raise Invalid(f"{where}.{key}", f"a {spec.kind} answer needs {key!r} (an empty list is an answer)")
    if spec.kind == MULTILABEL:
        _check_labels(spec, value["labels"], f"{where}.labels")
    else:
        assert size is not None, "geometry items carry their image's size (check_item_data)"
        _check_objects(spec, value["objects"], size, f"{where}.objects")
    return {key: value[key]}


def _check_labels(spec: AnnotationSpec, labels: Any, where: str) -> None:
    if not isinstance(labels, list):
        raise Invalid(where, "a list of the job's labels")
    allowed = set(spec.labels)
    seen: set[str] = set()
    for index, label in enumerate(labels):
        if not isinstance(label, str) or label not in allowed:
            raise Invalid(f"{where}.{index}", "not one of the labels in the task's annotation")
        if label in seen:
            raise Invalid(f"{where}.{index}", "the same label twice")
        seen.add(label)


def _check_objects(spec: AnnotationSpec, objects: Any, size: tuple[float, float], where: str) -> None:
    if not isinstance(objects, list):
        raise Invalid(where, "a list of objects (empty: nothing to draw)")
    if len(objects) > spec.max_objects:
        raise Invalid(where, f"more objects than the job's max_objects ({len(objects)} > {spec.max_objects})")
    shapes = " or ".join(spec.shape_fields)
    allowed = set(spec.labels)
    for index, obj in enumerate(objects):
        place = f"{where}.{index}"
        if not isinstance(obj, dict):
            raise Invalid(place, f"an object with a label and {shapes!r}")
        for name in sorted(obj):
            if name != "label" and name not in spec.shape_fields:
                raise Invalid(f"{place}.{name}", f"not part of a {spec.kind} object (label and {shapes})")
        label = obj.get("label")
        if not isinstance(label, str) or label not in allowed:
            raise Invalid(f"{place}.label", "not one of the labels in the task's annotation")
        shape = _shape_field(spec, obj, place)
        check = CHECKS[shape]
        check(spec, obj[shape], size, f"{place}.{shape}")


def _shape_field(spec: AnnotationSpec, obj: dict[str, Any], place: str) -> str:
    """The one field holding the object's geometry (a polygon has `points` or `polygons`)."""
    given = [name for name in spec.shape_fields if name in obj]
    if len(given) > 1:
        raise Invalid(f"{place}.{given[1]}", f"give one of {' or '.join(given)}, not both")
    if not given:
        first, *others = spec.shape_fields
        raise Invalid(f"{place}.{first}", "missing" + "".join(f" (or {name}: several parts)" for name in others))
    return given[0]


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _numbers(value: Any, count: int) -> bool:
    return isinstance(value, list) and len(value) == count and all(_number(v) for v in value)


def _fmt(value: float) -> str:
    return f"{value:g}"


def _inside(x: float, y: float, size: tuple[float, float]) -> str | None:
    """Why a point is outside the image (with the tolerance), or None."""
    width, height = size
    if x < -EDGE_TOLERANCE:
        return f"outside the image (x = {_fmt(x)} < 0)"
    if y < -EDGE_TOLERANCE:
        return f"outside the image (y = {_fmt(y)} < 0)"
    if x > width + EDGE_TOLERANCE:
        return f"outside the image (x = {_fmt(x)} > width {_fmt(width)})"
    if y > height + EDGE_TOLERANCE:
        return f"outside the image (y = {_fmt(y)} > height {_fmt(height)})"
    return None


def _check_box(spec: AnnotationSpec, box: Any, size: tuple[float, float], where: str) -> None:
    if not _numbers(box, 4):
        raise Invalid(where, "[x, y, w, h]: four numbers")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise Invalid(where, f"not a box (w = {_fmt(w)}, h = {_fmt(h)}: both must be positive)")
    if min(w, h) < spec.min_size:
        raise Invalid(where, f"smaller than the job's min_size {_fmt(spec.min_size)} (w = {_fmt(w)}, h = {_fmt(h)})")
    width, height = size
    reason = _inside(x, y, size)
    if reason is None and x + w > width + EDGE_TOLERANCE:
        reason = f"outside the image (x + w = {_fmt(x + w)} > width {_fmt(width)})"
    if reason is None and y + h > height + EDGE_TOLERANCE:
        reason = f"outside the image (y + h = {_fmt(y + h)} > height {_fmt(height)})"
    if reason is not None:
        raise Invalid(where, reason)


def _check_polygon(spec: AnnotationSpec, points: Any, size: tuple[float, float], where: str) -> shapely.Polygon:
    """One ring: the job's corner count, inside the image, an area, not crossing itself."""
    if not isinstance(points, list):
        raise Invalid(where, "a list of corners [x, y]")
    if not spec.min_vertices <= len(points) <= spec.max_vertices:
        raise Invalid(where, f"{len(points)} corners; the job takes {spec.min_vertices} to {spec.max_vertices}")
    for index, point in enumerate(points):
        if not _numbers(point, 2):
            raise Invalid(f"{where}.{index}", "[x, y]: two numbers")
        reason = _inside(point[0], point[1], size)
        if reason is not None:
            raise Invalid(f"{where}.{index}", reason)
    polygon = shapely.Polygon(points)
    if not polygon.convex_hull.area > 0:
        raise Invalid(where, "no area (the corners lie on one line)")
    if not polygon.is_valid:  # a valid polygon has an area: its ring does not cross itself
        raise Invalid(where, f"not a simple polygon ({shapely.is_valid_reason(polygon)})")
    return polygon


def _check_polygons(spec: AnnotationSpec, parts: Any, size: tuple[float, float], where: str) -> None:
    """Several disjoint parts of one object: each a ring as `points` is, none overlapping another
    (touching along an edge or at a corner is allowed: the parts' union is the object)."""
    if not isinstance(parts, list) or not parts or len(parts) > MAX_PARTS:
        raise Invalid(where, f"a list of 1 to {MAX_PARTS} polygons, each a list of corners [x, y]")
    rings = [_check_polygon(spec, part, size, f"{where}.{index}") for index, part in enumerate(parts)]
    tree = shapely.STRtree(rings)
    later, earlier = tree.query(rings, predicate="intersects")
    for second, first in sorted(zip(later.tolist(), earlier.tolist(), strict=True)):
        if first < second and shapely.intersection(rings[first], rings[second]).area > 0:
            raise Invalid(f"{where}.{second}", f"overlaps part {first} (the parts of an object are disjoint)")


def _check_keypoints(spec: AnnotationSpec, keypoints: Any, size: tuple[float, float], where: str) -> None:
    if not isinstance(keypoints, list) or len(keypoints) != len(spec.points):
        raise Invalid(where, f"one [x, y, v] per point of the job, in its order ({len(spec.points)})")
    labelled = 0
    for index, point in enumerate(keypoints):
        place = f"{where}.{index}"
        if not _numbers(point, 3) or point[2] not in VISIBILITY or type(point[2]) is not int:
            raise Invalid(place, "[x, y, v]: numbers, v 0 (not labelled), 1 (occluded) or 2 (visible)")
        if point[2] == 0:
            continue
        labelled += 1
        reason = _inside(point[0], point[1], size)
        if reason is not None:
            raise Invalid(place, f"{spec.points[index]} {reason}")
    if labelled == 0:
        raise Invalid(where, "no point labelled (v = 0 everywhere): leave the object out")


CHECKS = {
    "bbox": _check_box,
    "points": _check_polygon,
    "polygons": _check_polygons,
    "keypoints": _check_keypoints,
}
