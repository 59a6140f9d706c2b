"""The result type and the names every caller relies on."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd

from .encode import Encoded, FloatArray, IntArray

__version__ = "1"
"""Bumped whenever the same answers could aggregate differently (stored with every result)."""

METHODS: tuple[str, ...] = (
    "auto",
    "majority_vote",
    "dawid_skene",
    "wawa",
    "zero_based_skill",
    "glad",
    "mace",
    "one_coin_dawid_skene",
)


def _crowdkit_version() -> str:
    try:
        return version("crowd-kit")
    except PackageNotFoundError:  # pragma: no cover - crowd-kit is a hard dependency
        return "unknown"


CROWDKIT_VERSION = _crowdkit_version()


def version_tag(method: str) -> str:
    """What identifies the algorithm that produced a result, e.g. `dawid_skene@1+crowdkit1.4.2`."""
    return f"{method}@{__version__}+crowdkit{CROWDKIT_VERSION}"


@dataclass(frozen=True)
class AggregationResult:
    """Aggregates of the real (non-golden) tasks that have answers, indexed by task."""

    labels: pd.Series
    confidence: pd.Series
    method: str
    version: str
    answers_used: pd.Series

    def __len__(self) -> int:
        return len(self.labels)


def empty_result(method: str) -> AggregationResult:
    """The result of aggregating nothing: empty, typed series."""
    index = pd.Index([], dtype=object, name="task")
    return AggregationResult(
        labels=pd.Series([], index=index, dtype=object, name="label"),
        confidence=pd.Series([], index=index, dtype=np.float64, name="confidence"),
        method=method,
        version=version_tag(method),
        answers_used=pd.Series([], index=index, dtype=np.int64, name="answers_used"),
    )


def build_result(
    enc: Encoded,
    probas: FloatArray,
    method: str,
    golden_tasks: pd.Index | None = None,
    choice: IntArray | None = None,
) -> AggregationResult:
    """Labels by the highest posterior unless the method chose (`choice`); on exact ties the
    label first in the job's label order wins (argmax takes the first). Golden tasks are
    left out of the result."""
    if choice is None:
        choice = probas.argmax(axis=1)
    conf = np.clip(probas[np.arange(len(choice)), choice], 0.0, 1.0)
    used = np.bincount(enc.t, minlength=enc.n_tasks).astype(np.int64)
    keep = np.ones(enc.n_tasks, dtype=bool)
    if golden_tasks is not None and len(golden_tasks):
        keep = ~enc.tasks.isin(golden_tasks)
    index = pd.Index(enc.tasks[keep], dtype=object, name="task")
    labels = np.asarray(enc.labels, dtype=object)[choice[keep]]
    return AggregationResult(
        labels=pd.Series(labels, index=index, dtype=object, name="label"),
        confidence=pd.Series(conf[keep], index=index, dtype=np.float64, name="confidence"),
        method=method,
        version=version_tag(method),
        answers_used=pd.Series(used[keep], index=index, dtype=np.int64, name="answers_used"),
    )
