"""The result of aggregating annotation answers, and the version every result records."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd

__version__ = "1"
"""Bumped whenever the same answers could aggregate differently (stored with every result)."""

METHODS: dict[str, str] = {
    "bbox": "box_fusion",
    "polygon": "polygon_fusion",
    "keypoints": "keypoint_fusion",
    "multilabel": "binary_relevance",
}
"""The method that aggregates each annotation kind."""


def _shapely_version() -> str:
    try:
        return version("shapely")
    except PackageNotFoundError:  # pragma: no cover - shapely is a hard dependency
        return "unknown"


def version_tag(method: str) -> str:
    """What identifies the algorithm behind a result, e.g. `box_fusion@geometry1+shapely2.1.1`."""
    return f"{method}@geometry{__version__}+shapely{_shapely_version()}"


@dataclass(frozen=True)
class GeometryResult:
    """Per real (non-golden) task with answers: the fused value, a confidence in [0, 1] and
    the answers used; per worker a skill in [0, 1]."""

    values: pd.Series
    confidence: pd.Series
    skills: pd.Series
    method: str
    version: str
    answers_used: pd.Series

    def __len__(self) -> int:
        return len(self.values)


def empty_result(method: str) -> GeometryResult:
    """The result of aggregating nothing: empty, typed series."""
    index = pd.Index([], dtype=object, name="task")
    return GeometryResult(
        values=pd.Series([], index=index, dtype=object, name="value"),
        confidence=pd.Series([], index=index, dtype=np.float64, name="confidence"),
        skills=pd.Series([], index=pd.Index([], dtype=object, name="worker"), dtype=np.float64, name="skill"),
        method=method,
        version=version_tag(method),
        answers_used=pd.Series([], index=index, dtype=np.int64, name="answers_used"),
    )
