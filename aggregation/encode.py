"""Integer coding of answer frames: the one place where strings meet numpy.

Every method works on the same canonical encoding, so results never depend on the row order
of the input frame: tasks and workers are sorted lexicographically, labels follow the job's
label set (then any unknown label, sorted), and answers are sorted by (task, worker, label).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Encoded:
    """Answers as integer codes; `t`, `w`, `l` index `tasks`, `workers`, `labels`."""

    tasks: pd.Index
    workers: pd.Index
    labels: tuple[str, ...]
    t: IntArray
    w: IntArray
    l: IntArray  # noqa: E741 - the usual name in the literature
    gold_t: IntArray
    gold_l: IntArray
    known_skill: FloatArray | None = field(default=None)
    """Per worker code: accuracy known from earlier jobs (NaN: none), with `known_weight`."""
    known_weight: FloatArray | None = field(default=None)
    """Per worker code: how many answers that accuracy counts for in this job's model."""

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def with_gold(self, gold_t: IntArray, gold_l: IntArray) -> Encoded:
        """The same answers with another set of clamped tasks (used by cross-validation)."""
        return replace(self, gold_t=gold_t, gold_l=gold_l)


def _factorize_sorted(values: pd.Series) -> tuple[IntArray, pd.Index]:
    """Codes of `values` in lexicographic order of the distinct values (hashing, then a
    sort of the uniques only, which is much faster than sorting millions of strings)."""
    codes, uniques = pd.factorize(values, sort=False)
    order = np.argsort(np.asarray(uniques, dtype=object), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank[codes], pd.Index(np.asarray(uniques, dtype=object)[order], dtype=object)


def label_order(answer_labels: pd.Series, golden: pd.Series | None, labels: Sequence[str] | None) -> tuple[str, ...]:
    """The label set in tie-breaking order: `labels` as given, then unknown labels sorted."""
    seen = set(answer_labels.unique().tolist())
    if golden is not None:
        seen |= set(golden.unique().tolist())
    given = [str(x) for x in (labels or [])]
    declared = list(dict.fromkeys(given))
    extra = sorted(seen - set(declared))
    return tuple(declared + extra)


def check_answers(answers: pd.DataFrame) -> pd.DataFrame:
    """Keep the three columns as strings; refuse frames without them or with missing values."""
    missing = {"task", "worker", "label"} - set(answers.columns)
    if missing:
        raise ValueError(f"answers lacks column(s): {sorted(missing)}")
    frame = answers[["task", "worker", "label"]]
    if frame.isna().to_numpy().any():
        raise ValueError("answers has missing task, worker or label values")
    return frame.astype(str)


def encode(
    answers: pd.DataFrame,
    golden: pd.Series | None = None,
    labels: Sequence[str] | None = None,
    known_workers: pd.DataFrame | None = None,
) -> Encoded:
    """Encode answers (already checked), the golden tasks that have answers, and what is
    known of workers from earlier jobs (`known_workers`: index worker, columns `accuracy`
    and `answers`, the weight it gets here)."""
    frame = check_answers(answers)
    gold = None if golden is None else golden.astype(str).set_axis(golden.index.astype(str))
    order = label_order(frame["label"], gold, labels)
    t, tasks = _factorize_sorted(frame["task"])
    w, workers = _factorize_sorted(frame["worker"])
    l = pd.Index(order).get_indexer(frame["label"]).astype(np.int64)  # noqa: E741
    key = (t * max(len(workers), 1) + w) * max(len(order), 1) + l
    perm = np.argsort(key, kind="stable")
    gold_t = np.zeros(0, dtype=np.int64)
    gold_l = np.zeros(0, dtype=np.int64)
    if gold is not None and len(gold):
        pos = tasks.get_indexer(gold.index)
        keep = pos >= 0
        gold_t = pos[keep].astype(np.int64)
        gold_l = pd.Index(order).get_indexer(gold.to_numpy()[keep]).astype(np.int64)
        by_task = np.argsort(gold_t, kind="stable")
        gold_t, gold_l = gold_t[by_task], gold_l[by_task]
    known_skill = known_weight = None
    if known_workers is not None and len(known_workers):
        known = known_workers.set_axis(known_workers.index.astype(str)).reindex(workers)
        known_weight = known["answers"].fillna(0.0).clip(lower=0.0).to_numpy(dtype=np.float64)
        known_skill = known["accuracy"].fillna(0.0).clip(0.0, 1.0).to_numpy(dtype=np.float64)
    return Encoded(tasks, workers, order, t[perm], w[perm], l[perm], gold_t, gold_l, known_skill, known_weight)


def vote_counts(enc: Encoded, weights: FloatArray | None = None) -> FloatArray:
    """(tasks x labels) matrix of (weighted) votes."""
    k = max(enc.n_labels, 1)
    flat = np.bincount(enc.t * k + enc.l, weights=weights, minlength=enc.n_tasks * k)
    return flat.astype(np.float64).reshape(enc.n_tasks, k)


def clamp(probas: FloatArray, enc: Encoded) -> FloatArray:
    """Set golden tasks to their known label with probability one (in place)."""
    if len(enc.gold_t):
        probas[enc.gold_t] = 0.0
        probas[enc.gold_t, enc.gold_l] = 1.0
    return probas
