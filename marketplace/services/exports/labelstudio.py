"""Label Studio tasks (JSON import): one task per item, `data` as uploaded (the labeling config
names its fields, e.g. `$image_url`), `meta.key` the item's key, and once aggregated a
prediction (`model_version` the method's version, `score` the confidence) whose results use
`from_name` "label" and `to_name` "image" (or "text" for label jobs without an image):
`choices` for labels, `rectanglelabels` and `polygonlabels` (one per part of an object drawn in
several) in percent of the image,
`keypointlabels` one per labelled point named by the point."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from marketplace.services.exports.names import rings, size
from marketplace.settings import CLASSIFICATION, AnnotationSpec


def _percent(value: float, whole: float) -> float:
    return round(100.0 * float(value) / whole, 4)


def results(spec: AnnotationSpec, row: dict[str, Any]) -> list[dict[str, Any]]:
    target = "image" if "image_url" in row["data"] else "text"
    common = {"from_name": "label", "to_name": target}
    if spec.kind == CLASSIFICATION:
        return [{**common, "type": "choices", "value": {"choices": [row["label"]]}}]
    if spec.kind == "multilabel":
        return [{**common, "type": "choices", "value": {"choices": list(row["labels"])}}]
    width, height = size(row)
    frame = {"original_width": width, "original_height": height, "image_rotation": 0}
    found = []
    for number, obj in enumerate(row["objects"]):
        region = {**common, **frame, "id": f"{row['item_id']}-{number}", "score": obj.get("score")}
        if spec.kind == "bbox":
            x, y, w, h = obj["bbox"]
            value = {
                "x": _percent(x, width),
                "y": _percent(y, height),
                "width": _percent(w, width),
                "height": _percent(h, height),
                "rotation": 0,
                "rectanglelabels": [obj["label"]],
            }
            found.append({**region, "type": "rectanglelabels", "value": value})
        elif spec.kind == "polygon":
            found += polygon_results(region, obj, width, height)
        else:
            for name, (x, y, v) in zip(spec.points, obj["keypoints"], strict=True):
                if v > 0:
                    value = {"x": _percent(x, width), "y": _percent(y, height), "width": 0.5, "keypointlabels": [name]}
                    found.append({**region, "id": f"{region['id']}-{name}", "type": "keypointlabels", "value": value})
    return found


def polygon_results(region: dict[str, Any], obj: dict[str, Any], width: float, height: float) -> list[dict[str, Any]]:
    """A `polygonlabels` result per ring: Label Studio has no polygon in several parts, so an
    object drawn in parts becomes a result per part (ids `<item>-<object>-<part>`)."""
    parts = rings(obj)
    found = []
    for number, ring in enumerate(parts):
        points = [[_percent(x, width), _percent(y, height)] for x, y in (p[:2] for p in ring)]
        value = {"points": points, "polygonlabels": [obj["label"]]}
        name = region["id"] if len(parts) == 1 else f"{region['id']}-{number}"
        found.append({**region, "id": name, "type": "polygonlabels", "value": value})
    return found


def write(spec: AnnotationSpec, rows: Iterable[dict[str, Any]]) -> bytes:
    tasks = []
    field = spec.answer_field
    for row in rows:
        task: dict[str, Any] = {"id": row["item_id"], "data": row["data"], "meta": {"key": row["key"]}}
        if row.get(field) is not None:
            task["predictions"] = [
                {"model_version": row["version"], "score": row["confidence"], "result": results(spec, row)}
            ]
        tasks.append(task)
    return json.dumps(tasks, separators=(",", ":")).encode()
