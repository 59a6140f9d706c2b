"""COCO (the format pycocotools reads): images with width and height (every aggregated item, also
those with nothing on them), categories in the job's label order (ids from 1; for keypoints with
the job's `points` and `skeleton`, 1-based), annotations with `bbox` [x, y, w, h], `area`,
`segmentation` (polygons: one flat list per ring, an object in several parts having several;
with `masks="rle"` a compressed RLE `{"size": [h, w], "counts"}` of the object's mask, made by
pycocotools from those rings, `iscrowd` still 0), `keypoints` flat [x, y, v] * n, and the fused
object's `score` and `n`. A polygon's `bbox` and `area` are those of the union of its parts
(also with RLE). Images also carry the item's `key` and `data`."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import shapely
from pycocotools import mask

from marketplace.services.exports.names import answered, image_name, labelled, object_box, rings, size, whole
from marketplace.settings import AnnotationSpec

POLYGONS, RLE = "polygons", "rle"
MASKS = (POLYGONS, RLE)  # how polygon segmentations are written (`?masks=`)


def categories(spec: AnnotationSpec) -> list[dict[str, Any]]:
    listed = []
    for index, label in enumerate(spec.labels, start=1):
        category: dict[str, Any] = {"id": index, "name": label, "supercategory": label}
        if spec.kind == "keypoints":
            position = {name: n for n, name in enumerate(spec.points, start=1)}
            category["keypoints"] = list(spec.points)
            category["skeleton"] = [[position[a], position[b]] for a, b in spec.skeleton]
        listed.append(category)
    return listed


def rle(flat: list[list[float]], image_size: tuple[float, float]) -> dict[str, Any]:
    """The mask of an object's rings as COCO's compressed RLE (column-major, counts a string)."""
    width, height = (math.ceil(v) for v in image_size)
    merged = mask.merge(mask.frPyObjects(flat, height, width))
    return {"size": [int(v) for v in merged["size"]], "counts": merged["counts"].decode("ascii")}


def annotation(
    spec: AnnotationSpec,
    obj: dict[str, Any],
    image: dict[str, Any],
    number: int,
    masks: str = POLYGONS,
) -> dict[str, Any]:
    """One object as a COCO annotation of `image` (its id, key and size)."""
    image_id, key, image_size = image["id"], image["key"], (float(image["width"]), float(image["height"]))
    box = object_box(obj)
    record: dict[str, Any] = {
        "id": number,
        "image_id": image_id,
        "key": key,
        "category_id": spec.labels.index(obj["label"]) + 1,
        "bbox": box,
        "area": round(box[2] * box[3], 2),
        "iscrowd": 0,
        "segmentation": [],
        "score": obj.get("score"),
        "n": obj.get("n"),
    }
    if spec.kind == "polygon":
        flat = [[float(v) for point in ring for v in point[:2]] for ring in rings(obj)]
        record["segmentation"] = flat if masks == POLYGONS else rle(flat, image_size)
        record["area"] = round(float(shapely.union_all([shapely.Polygon(ring) for ring in rings(obj)]).area), 2)
    if spec.kind == "keypoints":
        record["keypoints"] = [float(v) if i % 3 < 2 else int(v) for p in obj["keypoints"] for i, v in enumerate(p)]
        record["num_keypoints"] = len(labelled(obj["keypoints"]))
    return record


def write(spec: AnnotationSpec, rows: Iterable[dict[str, Any]], masks: str = POLYGONS) -> bytes:
    """The COCO document; `masks`: polygon segmentations as `polygons` (rings) or `rle`."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for row in answered(rows):
        width, height = size(row)
        images.append(
            {
                "id": row["item_id"],
                "file_name": image_name(row),
                "width": whole(width),
                "height": whole(height),
                "coco_url": row["data"].get("image_url"),
                "key": row["key"],
                "data": row["data"],
            }
        )
        for obj in row["objects"]:
            annotations.append(annotation(spec, obj, images[-1], len(annotations) + 1, masks))
    document = {
        "info": {"description": f"{spec.kind} results", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": categories(spec),
    }
    return json.dumps(document, separators=(",", ":")).encode()
