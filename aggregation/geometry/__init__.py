"""Image annotation: golden scoring and aggregation of boxes, polygons, keypoints and label sets.

Answers and gold values are dicts as the marketplace stores them: classification
`{"label"}`, multi-label `{"labels": [...]}`, boxes `{"objects": [{"label", "bbox": [x, y, w, h]}]}`,
polygons `{"objects": [{"label", "points": [[x, y], ...]}]}` (an object in several parts has
`"polygons": [[[x, y], ...], ...]` instead of `points`), keypoints
`{"objects": [{"label", "keypoints": [[x, y, v], ...]}]}`. An empty `objects` list is a real
answer ("nothing to draw"); a missing value (None) is no answer and is left out.
Imports nothing of the rest of the project.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .agreement import answers_agree, job_agreement, mean_pairwise_similarity, worker_agreement
from .objects import aggregate_geometry, image_sizes
from .result import METHODS, GeometryResult, __version__, empty_result
from .scoring import check_kind, score_answer, threshold
from .shapes import GEOMETRY_KINDS, KINDS

__all__ = [
    "GEOMETRY_KINDS",
    "KINDS",
    "GeometryResult",
    "__version__",
    "aggregate_objects",
    "answers_agree",
    "job_agreement",
    "mean_pairwise_similarity",
    "score_answer",
    "worker_agreement",
]


def _as_value(value: Any) -> Any:
    """A stored answer as a dict (JSON text is parsed); None stays None (no answer)."""
    if isinstance(value, str):
        return json.loads(value)
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value


def _key(kind: str) -> str:
    return "labels" if kind == "multilabel" else "objects"


def check_values(kind: str, answers: pd.DataFrame) -> pd.DataFrame:
    """Answers as (task, worker, value) with string ids, no-answers dropped, one answer per
    task and worker (the first), sorted by task then worker so results never depend on the
    frame's row order."""
    missing = {"task", "worker", "value"} - set(answers.columns)
    if missing:
        raise ValueError(f"answers lack the columns {sorted(missing)}")
    frame = pd.DataFrame(
        {
            "task": answers["task"].astype(str).to_numpy(),
            "worker": answers["worker"].astype(str).to_numpy(),
            "value": [_as_value(v) for v in answers["value"]],
        }
    )
    frame = frame.loc[np.fromiter((v is not None for v in frame["value"]), dtype=bool, count=len(frame))]
    key = _key(kind)
    for row, value in zip(frame.index, frame["value"], strict=True):
        if not isinstance(value, Mapping) or not isinstance(value.get(key), list):
            raise ValueError(f"answers row {row}: value needs a {key!r} list")
    frame = frame.drop_duplicates(["task", "worker"], keep="first")
    return frame.sort_values(["task", "worker"], kind="stable").reset_index(drop=True)


def check_golden(kind: str, golden: pd.Series | None) -> dict[str, Mapping[str, Any]]:
    """Golden values by task id (string), each checked for its list."""
    if golden is None:
        return {}
    key = _key(kind)
    result: dict[str, Mapping[str, Any]] = {}
    for task, value in golden.items():
        value = _as_value(value)
        if not isinstance(value, Mapping) or not isinstance(value.get(key), list):
            raise ValueError(f"golden task {task}: value needs a {key!r} list")
        result[str(task)] = value
    return result


def aggregate_objects(
    kind: str,
    answers: pd.DataFrame,
    spec: Mapping[str, Any],
    *,
    golden: pd.Series | None = None,
    sizes: pd.DataFrame | None = None,
) -> GeometryResult:
    """Fuse annotation answers per task.

    `answers`: columns task, worker, value (the answer dict); `golden`: task -> gold dict
    (golden tasks teach skills and are left out of the result); `sizes`: indexed by task (or
    with a `task` column) with `width` and `height` (fused boxes are clipped to the image,
    OKS falls back to the image's area). Returns per real task the fused value
    (`{"objects": [...]}`, each object with `score` (support) and `n` (workers in its
    cluster), or `{"labels": [...]}` for multi-label), a confidence, per worker a skill, the
    method and version, and the answers used.
    """
    check_kind(kind)
    if kind == "classification":
        raise ValueError("classification answers are aggregated by aggregation.aggregate")
    frame = check_values(kind, answers)
    gold = check_golden(kind, golden)
    if kind == "multilabel":
        from .multilabel import METHOD, aggregate_multilabel

        return aggregate_multilabel(frame, spec, gold) if len(frame) else empty_result(METHOD)
    if frame.empty:
        return empty_result(METHODS[kind])
    return aggregate_geometry(kind, frame, spec, gold, image_sizes(sizes), threshold(kind, spec))
