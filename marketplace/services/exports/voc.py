"""Pascal VOC: a zip with one `Annotations/<name>.xml` per image (also empty ones): file name,
size, and an `object` per box with `name` (its label) and `bndbox` in pixels (0-based, rounded:
xmin = x, xmax = x + w). Each file also carries the item's `key` and `data` (JSON), and the
fused box's `score`. Files are named by key (`names.FileNames`)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable
from typing import Any
from xml.etree import ElementTree

from marketplace.services.exports.names import FileNames, answered, image_name, size
from marketplace.settings import AnnotationSpec


def _add(parent: ElementTree.Element, tag: str, text: Any) -> ElementTree.Element:
    child = ElementTree.SubElement(parent, tag)
    child.text = str(text)
    return child


def document(row: dict[str, Any]) -> bytes:
    root = ElementTree.Element("annotation")
    _add(root, "folder", "images")
    _add(root, "filename", image_name(row))
    _add(root, "key", row["key"])
    _add(root, "data", json.dumps(row["data"], separators=(",", ":")))
    width, height = size(row)
    dimensions = ElementTree.SubElement(root, "size")
    _add(dimensions, "width", round(width))
    _add(dimensions, "height", round(height))
    _add(dimensions, "depth", 3)
    _add(root, "segmented", 0)
    for obj in row["objects"]:
        x, y, w, h = (float(v) for v in obj["bbox"])
        element = ElementTree.SubElement(root, "object")
        _add(element, "name", obj["label"])
        _add(element, "pose", "Unspecified")
        _add(element, "truncated", 0)
        _add(element, "difficult", 0)
        if obj.get("score") is not None:
            _add(element, "score", obj["score"])
        box = ElementTree.SubElement(element, "bndbox")
        for tag, value in (("xmin", x), ("ymin", y), ("xmax", x + w), ("ymax", y + h)):
            _add(box, tag, round(value))
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def write(spec: AnnotationSpec, rows: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    names = FileNames()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for row in answered(rows):
            archive.writestr(f"Annotations/{names(row['key'], row['item_id'])}.xml", document(row))
    return buffer.getvalue()
