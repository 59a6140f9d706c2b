"""The crowd-kit methods we do not reimplement, behind the same encoded interface.

They take the canonically sorted answers (so their output does not depend on input row
order) and we re-order their posteriors by the job's label order, so ties resolve the same
way as everywhere else. None of them accepts golden tasks: golden answers enter as ordinary
answers (they still inform worker skills), and golden tasks are dropped from the result.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from crowdkit.aggregation import GLAD, MACE, Wawa, ZeroBasedSkill

from .encode import Encoded, FloatArray

_FACTORIES: dict[str, Callable[[], object]] = {
    "wawa": Wawa,
    "zero_based_skill": ZeroBasedSkill,
    "glad": GLAD,
    "mace": lambda: MACE(random_state=0),
}


def to_frame(enc: Encoded) -> pd.DataFrame:
    """The encoded answers back as a string frame, in canonical order."""
    return pd.DataFrame(
        {
            "task": enc.tasks.to_numpy()[enc.t],
            "worker": enc.workers.to_numpy()[enc.w],
            "label": np.asarray(enc.labels, dtype=object)[enc.l],
        }
    )


def crowdkit_probas(enc: Encoded, method: str) -> FloatArray:
    """Posteriors (tasks x labels, label order of `enc`) from a crowd-kit aggregator."""
    model = _FACTORIES[method]()
    with warnings.catch_warnings():
        # crowd-kit 1.4.2 trips pandas FutureWarnings (downcasting, groupby defaults) that
        # say nothing about our data; keep them out of callers' logs and strict test runs.
        warnings.simplefilter("ignore", FutureWarning)
        probas = model.fit_predict_proba(to_frame(enc))  # type: ignore[attr-defined]
    frame = probas.reindex(index=enc.tasks, columns=list(enc.labels), fill_value=0.0)
    values = frame.to_numpy(dtype=np.float64)
    values = np.nan_to_num(values, nan=0.0)
    total = values.sum(axis=1, keepdims=True)
    return np.where(total > 0, values / np.where(total > 0, total, 1.0), 1.0 / enc.n_labels)
