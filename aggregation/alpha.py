"""Krippendorff's alpha for labels: how much workers agree beyond chance, per job.

crowd-kit's `alpha_krippendorff` (nltk's `AnnotationTask` underneath) does the computation: the
nominal distance for one label per answer (its default), the Jaccard distance between label sets
for multi-label answers (two empty sets agree). It runs in pure Python at ~6 us an answer, so a job's figure is taken on
its first `max_tasks` tasks (by task id, so the same answers give the same figure).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import cast

import pandas as pd
from crowdkit.metrics.data import alpha_krippendorff

MAX_TASKS = 20_000


def set_distance(a: Hashable, b: Hashable) -> float:
    """1 - Jaccard similarity of two label sets (frozensets); 0 for two empty sets."""
    left, right = frozenset(cast(frozenset[str], a)), frozenset(cast(frozenset[str], b))
    union = left | right
    return 0.0 if not union else 1.0 - len(left & right) / len(union)


def label_alpha(answers: pd.DataFrame, max_tasks: int = MAX_TASKS) -> float | None:
    """Alpha over `answers` (task, worker, label; a label may be a frozenset of labels for
    multi-label answers), on the first `max_tasks` tasks with at least two answers; None when
    no task has two answers or alpha is undefined (every answer the same)."""
    if answers.empty:
        return None
    frame = answers[["task", "worker", "label"]].drop_duplicates(["task", "worker"])
    counts = frame.groupby("task").size()
    shared = counts[counts >= 2].index
    if not len(shared):
        return None
    keep = sorted(shared, key=lambda t: (len(str(t)), str(t)))[:max_tasks]
    frame = frame[frame["task"].isin(keep)]
    sets = isinstance(frame["label"].iloc[0], frozenset)
    try:
        value = alpha_krippendorff(frame, set_distance) if sets else alpha_krippendorff(frame)
    except ZeroDivisionError:  # one label everywhere: no disagreement expected, alpha undefined
        return None
    return None if math.isnan(value) else round(float(value), 4)
