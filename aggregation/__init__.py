"""Aggregation of crowd answers: pure computation on pandas and crowd-kit, no I/O.

Answers come as a frame with `task`, `worker`, `label` (strings); golden tasks as a Series
task -> known label. Every method returns labels and a confidence per task, and records
its name and version so a stored result says how it was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version as _package_version

import numpy as np
import pandas as pd

__version__ = "1"
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
_CROWDKIT = _package_version("crowd-kit")


@dataclass(frozen=True)
class AggregationResult:
    labels: pd.Series
    confidence: pd.Series
    method: str
    version: str
    answers_used: pd.Series


def _version(method: str) -> str:
    return f"{method}@{__version__}+crowdkit{_CROWDKIT}"


def _canonical(answers: pd.DataFrame) -> pd.DataFrame:
    """Strings, one answer per (task, worker), sorted: same input, same fit, bit for bit."""
    frame = answers[["task", "worker", "label"]].astype(str)
    frame = frame.drop_duplicates(["task", "worker"], keep="last")
    return frame.sort_values(["task", "worker"], kind="mergesort").reset_index(drop=True)


def _label_order(frame: pd.DataFrame, labels: Sequence[str] | None) -> list[str]:
    seen = sorted(set(frame["label"]))
    order = [str(label) for label in labels] if labels is not None else []
    return order + [label for label in seen if label not in order]


def majority_vote(frame: pd.DataFrame, order: list[str]) -> tuple[pd.Series, pd.Series]:
    """Most votes wins; ties go to the label listed first in the job's label set.

    crowd-kit's MajorityVote takes the first column on ties, which depends on the pandas
    version; here the rule is explicit.
    """
    counts = pd.crosstab(frame["task"], frame["label"]).reindex(columns=order, fill_value=0)
    values = counts.to_numpy()
    best = values.argmax(axis=1)  # first maximum in label order
    labels = pd.Series(np.asarray(order, dtype=object)[best], index=counts.index, dtype=object)
    confidence = pd.Series(values.max(axis=1) / values.sum(axis=1), index=counts.index, dtype=float)
    return labels, confidence


def _crowdkit(method: str, frame: pd.DataFrame, golden: pd.Series) -> tuple[pd.Series, pd.Series]:
    from crowdkit.aggregation import GLAD, MACE, DawidSkene, OneCoinDawidSkene, Wawa, ZeroBasedSkill

    if method == "dawid_skene":
        model = DawidSkene(n_iter=100)
        known = golden[golden.index.isin(frame["task"])]
        model.fit(frame, true_labels=known if len(known) else None)
        probas = model.probas_
    elif method == "one_coin_dawid_skene":
        probas = OneCoinDawidSkene(n_iter=100).fit(frame).probas_
    elif method == "glad":
        probas = GLAD(n_iter=100, silent=True).fit(frame).probas_
    elif method == "mace":
        probas = MACE(n_iter=100, random_state=0, verbose=0).fit(frame).probas_
    elif method == "wawa":
        probas = Wawa().fit_predict_proba(frame)
    elif method == "zero_based_skill":
        probas = ZeroBasedSkill(n_iter=100).fit_predict_proba(frame)
    else:
        raise ValueError(f"unknown method {method!r}")
    assert probas is not None
    probas = probas.sort_index(axis=1)
    labels = probas.idxmax(axis=1).astype(str)
    return labels, probas.max(axis=1).astype(float)


def aggregate(
    answers: pd.DataFrame,
    method: str = "auto",
    golden: pd.Series | None = None,
    labels: Sequence[str] | None = None,
) -> AggregationResult:
    """Aggregate every task that has answers.

    Golden tasks take part in the fit (Dawid-Skene clamps them to their known label) and
    come back with their known label and confidence 1.0; callers show real tasks only.
    `"auto"` is Dawid-Skene with golden clamping, majority vote when there are too few
    answers per worker to estimate error matrices.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    golden = (golden if golden is not None else pd.Series(dtype=object)).astype(str)
    golden.index = golden.index.astype(str)
    frame = _canonical(answers)
    used = method
    if method == "auto":
        used = "dawid_skene" if len(frame) and frame.groupby("worker").size().median() >= 3 else "majority_vote"
    name = f"auto:{used}" if method == "auto" else used
    if frame.empty:
        empty = pd.Series(dtype=object)
        return AggregationResult(empty, pd.Series(dtype=float), name, _version(name), pd.Series(dtype=int))
    order = _label_order(frame, labels)
    if used == "majority_vote" or frame["label"].nunique() == 1:
        result_labels, confidence = majority_vote(frame, order)
    else:
        result_labels, confidence = _crowdkit(used, frame, golden)
    known = golden[golden.index.isin(result_labels.index)]
    result_labels.loc[known.index] = known
    confidence.loc[known.index] = 1.0
    answers_used = frame.groupby("task").size().reindex(result_labels.index).astype(int)
    return AggregationResult(result_labels, confidence.clip(0.0, 1.0), name, _version(name), answers_used)


def golden_scores(
    answers: pd.DataFrame, golden: pd.Series, prior_correct: float = 1.0, prior_wrong: float = 1.0
) -> pd.DataFrame:
    """Per worker: golden answers seen, correct, and a smoothed accuracy (1 of 1 is 2/3)."""
    frame = _canonical(answers)
    golden = golden.astype(str)
    golden.index = golden.index.astype(str)
    on_golden = frame[frame["task"].isin(golden.index)]
    correct = on_golden["label"].to_numpy() == golden.reindex(on_golden["task"]).to_numpy()
    seen = on_golden.groupby("worker").size()
    right = pd.Series(correct, index=on_golden["worker"].to_numpy()).groupby(level=0).sum()
    workers = sorted(set(frame["worker"]))
    scores = pd.DataFrame(index=pd.Index(workers, name="worker"))
    scores["golden_seen"] = seen.reindex(workers, fill_value=0).astype(int)
    scores["golden_correct"] = right.reindex(workers, fill_value=0).astype(int)
    scores["golden_accuracy"] = (scores["golden_correct"] + prior_correct) / (
        scores["golden_seen"] + prior_correct + prior_wrong
    )
    return scores


def agreement(answers: pd.DataFrame, labels: pd.Series) -> pd.Series:
    """Per worker: the share of its answers (on the given tasks) equal to the aggregate."""
    frame = _canonical(answers)
    labels = labels.astype(str)
    labels.index = labels.index.astype(str)
    frame = frame[frame["task"].isin(labels.index)]
    if frame.empty:
        return pd.Series(dtype=float)
    same = frame["label"].to_numpy() == labels.reindex(frame["task"]).to_numpy()
    return pd.Series(same, index=frame["worker"].to_numpy()).groupby(level=0).mean().astype(float)
