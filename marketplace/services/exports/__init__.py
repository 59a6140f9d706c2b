"""Results of an annotation job in the formats training tools read: `coco` (one JSON file),
`yolo` and `voc` (zip archives) and `labelstudio` (tasks with predictions).

Each takes the job's result rows (`services/results.iter_results`: item id, key, data, the
fused `objects` or `labels`, confidence, method, version) and its annotation, and returns the
file's bytes. Every record carries the item's key and data (invariant 9): COCO images and Label
Studio tasks hold them, YOLO and VOC archives name their files by key and hold them too. Items
not aggregated yet are left out of COCO, YOLO and VOC (an image there is one the crowd
answered; an image with nothing on it is kept, with no annotations); Label Studio lists them
without predictions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from marketplace.errors import Invalid
from marketplace.services.exports import coco, labelstudio, voc, yolo
from marketplace.settings import AnnotationSpec


@dataclass(frozen=True)
class Export:
    body: bytes
    mimetype: str
    extension: str


# format -> (annotation types it holds, writer, mimetype, file extension)
FORMATS: dict[str, tuple[tuple[str, ...], Any, str, str]] = {
    "coco": (("bbox", "polygon", "keypoints"), coco.write, "application/json", "coco.json"),
    "yolo": (("bbox", "polygon", "keypoints"), yolo.write, "application/zip", "yolo.zip"),
    "voc": (("bbox",), voc.write, "application/zip", "voc.zip"),
    "labelstudio": (
        ("classification", "multilabel", "bbox", "polygon", "keypoints"),
        labelstudio.write,
        "application/json",
        "labelstudio.json",
    ),
}


def check_masks(name: str, spec: AnnotationSpec, masks: str | None) -> None:
    """`masks` (how COCO writes polygon segmentations) is refused where it would change nothing
    (another format, a job without polygons): a requester asking for RLE masks of a box job
    learns it at once rather than from a file without them."""
    if masks is None:
        return
    if name != "coco" or spec.kind != "polygon":
        raise Invalid("masks", f"only for format=coco of a polygon job (this is format={name} of a {spec.kind} job)")


def export(name: str, spec: AnnotationSpec, rows: Iterable[dict[str, Any]], masks: str | None = None) -> Export:
    """The job's results as the format `name`; Invalid (`format`) when it cannot hold the type,
    (`masks`) when masks are asked for where there are none (`check_masks`)."""
    kinds, write, mimetype, extension = FORMATS[name]
    if spec.kind not in kinds:
        raise Invalid("format", f"{name} holds the results of {', '.join(kinds)} jobs, not {spec.kind}")
    check_masks(name, spec, masks)
    body = write(spec, rows) if masks is None else coco.write(spec, rows, masks)
    return Export(body, mimetype, extension)
