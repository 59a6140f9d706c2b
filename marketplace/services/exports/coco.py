"""COCO (the format pycocotools reads): images with width and height (every aggregated item, also
those with nothing on them), categories in the job's label order (ids from 1; for keypoints with
the job's `points` and `skeleton`, 1-based), annotations with `bbox` [x, y, w, h], `area`,
`segmentation` (polygons: the ring as one flat list), `keypoints` flat [x, y, v] * n, and the
fused object's `score` and `n`. Images also carry the item's `key` and `data`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import shapely

from marketplace.services.exports.names import answered, image_name, labelled, object_box, size, whole
from marketplace.settings import AnnotationSpec


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


def annotation(spec: AnnotationSpec, obj: dict[str, Any], image_id: int, key: str, number: int) -> dict[str, Any]:
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
        record["segmentation"] = [[float(v) for point in obj["points"] for v in point[:2]]]
        record["area"] = round(float(shapely.Polygon(obj["points"]).area), 2)
    if spec.kind == "keypoints":
        record["keypoints"] = [float(v) if i % 3 < 2 else int(v) for p in obj["keypoints"] for i, v in enumerate(p)]
        record["num_keypoints"] = len(labelled(obj["keypoints"]))
    return record


def write(spec: AnnotationSpec, rows: Iterable[dict[str, Any]]) -> bytes:
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
            annotations.append(annotation(spec, obj, row["item_id"], row["key"], len(annotations) + 1))
    document = {
        "info": {"description": f"{spec.kind} results", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": categories(spec),
    }
    return json.dumps(document, separators=(",", ":")).encode()
