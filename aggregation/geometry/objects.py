"""`aggregate_objects` for boxes, polygons and keypoints: the fusion loop and its result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .boxes import BoxKind
from .fusion import DEFAULT_MIN_SUPPORT, Fused, Kind, Layout, build, fuse
from .keypoints import KeypointKind, count_points
from .polygons import PolygonKind
from .result import GeometryResult, empty_result, version_tag


def make_kind(kind: str, spec: Mapping[str, Any], frame: pd.DataFrame, golden: Mapping[str, Any]) -> Kind:
    """The geometry model of an annotation kind."""
    if kind == "bbox":
        return BoxKind(frame["worker"].nunique(), learn_habits=bool(spec.get("learn_habits", True)))
    if kind == "polygon":
        return PolygonKind(spec)
    if kind == "keypoints":
        return KeypointKind(spec, count_points(spec, [*frame["value"], *golden.values()]))
    raise ValueError(f"{kind!r} has no object geometry")


def image_sizes(sizes: pd.DataFrame | None) -> dict[str, tuple[float, float]]:
    """task -> (width, height) from a frame indexed by task with `width` and `height`."""
    if sizes is None or sizes.empty:
        return {}
    frame = sizes.copy()
    if "task" in frame.columns:
        frame = frame.set_index("task")
    return {
        str(t): (float(w), float(h))
        for t, w, h in zip(frame.index, frame["width"], frame["height"], strict=True)
        if pd.notna(w) and pd.notna(h)
    }


def aggregate_geometry(
    kind: str,
    frame: pd.DataFrame,
    spec: Mapping[str, Any],
    golden: Mapping[str, Mapping[str, Any]],
    sizes: Mapping[str, tuple[float, float]],
    threshold: float,
) -> GeometryResult:
    """Fuse the answers of `frame` (task, worker, value; one answer per task and worker)."""
    model = make_kind(kind, spec, frame, golden)
    areas = {t: w * h for t, (w, h) in sizes.items()}
    objects, layout = build(model, frame, golden, areas, threshold)
    labels = [str(x) for x in spec.get("labels") or []]
    fused = fuse(model, objects, layout, float(spec.get("min_support", DEFAULT_MIN_SUPPORT)), labels)
    return _result(model, fused, objects.cluster, layout, sizes)


def _result(
    model: Kind, fused: Fused, cluster_of_object: np.ndarray, layout: Layout, sizes: Mapping[str, tuple[float, float]]
) -> GeometryResult:
    """Fused objects per real task, ordered by support then position; the confidence is the
    smallest margin of the task's keep-or-drop decisions (support of a kept cluster, one
    minus that of a dropped one; 1.0 when nobody drew anything)."""
    real_tasks = np.flatnonzero(~layout.golden_task)
    objects_per_task: dict[int, list[dict[str, Any]]] = {int(t): [] for t in real_tasks}
    margin = np.ones(len(layout.tasks))
    drawn = fused.members > 0
    decision = np.where(fused.keep, fused.support, 1.0 - fused.support)
    np.minimum.at(margin, layout.cluster_task[drawn], decision[drawn])
    for c in np.flatnonzero(fused.keep):
        t = int(layout.cluster_task[c])
        if t not in objects_per_task:
            continue
        size = sizes.get(str(layout.tasks[t]))
        obj: dict[str, Any] = {"label": str(fused.label[c])}
        obj.update(model.dump(fused.geometry[c], size))
        obj["score"] = round(float(fused.support[c]), 4)
        obj["n"] = int(fused.members[c])
        objects_per_task[t].append(obj)
    index = pd.Index([layout.tasks[t] for t in real_tasks], dtype=object, name="task")
    values = [{"objects": sorted(objects_per_task[int(t)], key=_order)} for t in real_tasks]
    used = np.bincount(layout.answer_task, minlength=len(layout.tasks))
    return GeometryResult(
        values=pd.Series(values, index=index, dtype=object, name="value"),
        confidence=pd.Series(margin[real_tasks], index=index, dtype=np.float64, name="confidence"),
        skills=pd.Series(fused.skills, index=layout.workers.rename("worker"), dtype=np.float64, name="skill"),
        method=model.method,
        version=version_tag(model.method),
        answers_used=pd.Series(used[real_tasks].astype(np.int64), index=index, name="answers_used"),
    )


def _order(obj: dict[str, Any]) -> tuple[float, ...]:
    """Highest support first, then top-left first (a stable, readable order)."""
    ring = obj.get("points") or (obj.get("polygons") or [[[0.0, 0.0]]])[0]
    anchor = obj.get("bbox") or (ring or [[0.0, 0.0]])[0] or [0.0, 0.0]
    if "keypoints" in obj:
        seen = [p for p in obj["keypoints"] if p[2] > 0] or [[0.0, 0.0, 0]]
        anchor = [min(p[0] for p in seen), min(p[1] for p in seen)]
    return (-obj["score"], float(anchor[1]), float(anchor[0]))


__all__ = ["aggregate_geometry", "empty_result", "image_sizes"]
