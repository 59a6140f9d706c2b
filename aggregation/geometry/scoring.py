"""A worker's answer scored against a known answer in [0, 1], per annotation kind.

Boxes and polygons: Hungarian matching on IoU among objects of the same label; a pair matches
when its IoU reaches the spec's `iou_threshold` (default 0.5); the score is the F1 of the
matches (2 * matches / (answer objects + gold objects)) times their mean IoU. Keypoints: the
same with OKS in place of IoU (`oks_threshold`, default 0.5). Both empty: 1.0; one empty: 0.0.
Multi-label: Jaccard of the label sets (1.0 when both are empty). Classification: 1.0 when the
labels are equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .matching import f1_times_mean, same_label
from .shapes import (
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_OKS_THRESHOLD,
    KINDS,
    FloatArray,
    box_iou,
    boxes_xyxy,
    keypoint_areas,
    keypoints_of,
    labels_of,
    objects_of,
    oks,
    polygon_iou,
    polygons_of,
    sigmas_for,
)


def check_kind(kind: str) -> None:
    """A clear error for an unknown annotation kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown annotation kind {kind!r}; expected one of {KINDS}")


def threshold(kind: str, spec: Mapping[str, Any]) -> float:
    """The similarity a pair of objects needs to match: IoU, or OKS for keypoints."""
    if kind == "keypoints":
        return float(spec.get("oks_threshold", DEFAULT_OKS_THRESHOLD))
    return float(spec.get("iou_threshold", DEFAULT_IOU_THRESHOLD))


def image_area(spec: Mapping[str, Any]) -> float:
    """The image's area when the spec carries `width` and `height` (OKS's fallback scale)."""
    width, height = spec.get("width"), spec.get("height")
    return float(width) * float(height) if width and height else 1.0


def similarity(
    kind: str, answer: Sequence[Mapping[str, Any]], gold: Sequence[Mapping[str, Any]], spec: Mapping[str, Any]
) -> FloatArray:
    """IoU (boxes, polygons) or OKS (keypoints, scaled by the gold side's objects) of every
    answer object with every gold object, ignoring labels."""
    if kind == "bbox":
        return box_iou(boxes_xyxy(answer), boxes_xyxy(gold))
    if kind == "polygon":
        return polygon_iou(polygons_of(answer), polygons_of(gold))
    if kind == "keypoints":
        n_points = len(spec.get("points") or []) or None
        left, right = keypoints_of(answer, n_points), keypoints_of(gold, n_points)
        width = max(left.shape[1], right.shape[1])
        left, right = keypoints_of(answer, width), keypoints_of(gold, width)
        return oks(left, right, sigmas_for(spec, width), keypoint_areas(right, image_area(spec)))
    raise ValueError(f"{kind!r} has no object geometry")


def labelled_similarity(
    kind: str, answer: Sequence[Mapping[str, Any]], gold: Sequence[Mapping[str, Any]], spec: Mapping[str, Any]
) -> FloatArray:
    """`similarity`, zero wherever the two objects' labels differ (they can never match)."""
    if not answer or not gold:
        return np.zeros((len(answer), len(gold)))
    return similarity(kind, answer, gold, spec) * same_label(labels_of(answer), labels_of(gold))


def jaccard(answer: Iterable[str], gold: Iterable[str]) -> float:
    """|A and G| / |A or G|, 1.0 when both are empty."""
    a, g = set(map(str, answer)), set(map(str, gold))
    return 1.0 if not a and not g else len(a & g) / len(a | g)


def score_answer(kind: str, answer: Mapping[str, Any], gold: Mapping[str, Any], spec: Mapping[str, Any]) -> float:
    """A worker's answer on a golden item scored in [0, 1] (see the module's docstring)."""
    check_kind(kind)
    if kind == "classification":
        return 1.0 if str(answer.get("label")) == str(gold.get("label")) else 0.0
    if kind == "multilabel":
        return jaccard(answer.get("labels") or [], gold.get("labels") or [])
    answer_objects, gold_objects = objects_of(answer), objects_of(gold)
    sim = labelled_similarity(kind, answer_objects, gold_objects, spec)
    return f1_times_mean(sim, threshold(kind, spec))
