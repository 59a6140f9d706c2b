"""File names and geometry shared by the exports."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileNames:
    """A file name per item from its key (characters outside [A-Za-z0-9._-] become `_`), unique
    in the archive: a name taken (after that replacement) gets the item id appended."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, key: str, item_id: int) -> str:
        name = _UNSAFE.sub("_", key).strip("._") or f"item-{item_id}"
        if name in self.taken:
            name = f"{name}-{item_id}"
        self.taken.add(name)
        return name


def image_name(row: dict[str, Any]) -> str:
    """The image's file name: the last part of `data.image_url` when there is one, else the key."""
    url = row["data"].get("image_url")
    if isinstance(url, str) and not url.startswith("data:"):
        last = urlparse(url).path.rsplit("/", 1)[-1]
        if last:
            return last
    return str(row["key"])


def size(row: dict[str, Any]) -> tuple[float, float]:
    data = row["data"]
    return float(data["width"]), float(data["height"])


def whole(value: float) -> float | int:
    """A pixel count as an integer when it is one (COCO readers expect integer sizes)."""
    return int(value) if float(value).is_integer() else float(value)


def bounds(points: Sequence[Sequence[float]]) -> list[float]:
    """[x, y, w, h] around points; zeros for none."""
    if not points:
        return [0.0, 0.0, 0.0, 0.0]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def labelled(keypoints: Sequence[Sequence[float]]) -> list[Sequence[float]]:
    return [p for p in keypoints if p[2] > 0]


def rings(obj: dict[str, Any]) -> list[list[list[float]]]:
    """A polygon object's rings: its one ring (`points`), or each of its parts (`polygons`)."""
    return list(obj["polygons"]) if "polygons" in obj else [obj["points"]]


def object_box(obj: dict[str, Any]) -> list[float]:
    """[x, y, w, h] of any object: its box, the bounds of its polygon (of all its parts) or of
    its labelled points."""
    if "bbox" in obj:
        return [float(v) for v in obj["bbox"]]
    if "points" in obj or "polygons" in obj:
        return bounds([point for ring in rings(obj) for point in ring])
    return bounds(labelled(obj["keypoints"]))


def answered(rows: Any) -> Any:
    """Rows of aggregated items (those with objects, possibly none)."""
    return (row for row in rows if row.get("objects") is not None)
