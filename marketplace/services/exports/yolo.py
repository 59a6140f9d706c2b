"""YOLO (Ultralytics): a zip with `data.yaml` (class names in the job's label order; the task,
detect, segment or pose; `kpt_shape` for pose), one `labels/<name>.txt` per image (also empty
ones) with a line per object, coordinates normalised to [0, 1] by the image's size:

- detect: `class cx cy w h`;
- segment: `class x1 y1 x2 y2 ...` (the polygon's corners; an object in several parts has a
  line per part, all of its class: YOLO has no object of several polygons);
- pose: `class cx cy w h px1 py1 v1 ...` (the box around the labelled points).

`items.jsonl` names each label file's item: its key and data (images go in `images/` under the
same names). Files are named by key (`names.FileNames`).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable
from typing import Any

from marketplace.services.exports.names import FileNames, answered, object_box, rings, size
from marketplace.settings import AnnotationSpec

TASKS = {"bbox": "detect", "polygon": "segment", "keypoints": "pose"}


def data_yaml(spec: AnnotationSpec) -> str:
    """YAML written by hand: JSON strings and lists are YAML flow scalars and sequences."""
    lines = [
        f"# {spec.kind} results; put the images in images/ named as their label files",
        "path: .",
        "train: images",
        "val: images",
        f"task: {TASKS[spec.kind]}",
        f"nc: {len(spec.labels)}",
        f"names: {json.dumps(list(spec.labels))}",
    ]
    if spec.kind == "keypoints":
        lines.append(f"kpt_shape: [{len(spec.points)}, 3]")
        lines.append(f"kpt_names: {json.dumps(list(spec.points))}")
    return "\n".join(lines) + "\n"


def _unit(value: float) -> str:
    return f"{min(max(value, 0.0), 1.0):.6f}"


def object_lines(spec: AnnotationSpec, obj: dict[str, Any], width: float, height: float) -> list[str]:
    """The object's label line; for a polygon one line per part, each with the object's class."""
    if spec.kind != "polygon":
        return [line(spec, obj, width, height)]
    klass = str(spec.labels.index(obj["label"]))
    return [segment_line(klass, ring, width, height) for ring in rings(obj)]


def segment_line(klass: str, ring: list[list[float]], width: float, height: float) -> str:
    corners = [_unit(value) for x, y in (p[:2] for p in ring) for value in (x / width, y / height)]
    return " ".join([klass, *corners])


def line(spec: AnnotationSpec, obj: dict[str, Any], width: float, height: float) -> str:
    parts = [str(spec.labels.index(obj["label"]))]
    x, y, w, h = object_box(obj)
    parts += [_unit((x + w / 2) / width), _unit((y + h / 2) / height), _unit(w / width), _unit(h / height)]
    if spec.kind == "keypoints":
        for px, py, v in obj["keypoints"]:
            seen = v > 0
            parts += [_unit(px / width if seen else 0.0), _unit(py / height if seen else 0.0), str(int(v))]
    return " ".join(parts)


def write(spec: AnnotationSpec, rows: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    names = FileNames()
    index: list[str] = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.yaml", data_yaml(spec))
        for row in answered(rows):
            width, height = size(row)
            name = names(row["key"], row["item_id"])
            text = "".join(entry + "\n" for obj in row["objects"] for entry in object_lines(spec, obj, width, height))
            archive.writestr(f"labels/{name}.txt", text)
            index.append(json.dumps({"file": f"labels/{name}.txt", "key": row["key"], "data": row["data"]}))
        archive.writestr("items.jsonl", "".join(entry + "\n" for entry in index))
    return buffer.getvalue()
