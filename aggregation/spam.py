"""A sequential test that tells a worker answering at random from an honest one.

Golden items alone see a spammer slowly (one answer in ten at the default golden ratio); the
other workers see every answer. Each answer is scored by q, the probability that it is right:
1 or 0 on a golden item; on a real item, the posterior of the label the worker gave, computed
from the *other* answers on that item (a one-coin Dawid-Skene fitted on the whole crowd, this
answer's own evidence taken out: with three answers an item, a spammer's own vote would
otherwise make it look a third right). Under "the worker is right with probability p, wrong
labels evenly" the answer had probability q p + (1 - q)(1 - p) / (K - 1); under "the worker
answers at random", 1 / K. The log of their ratio, summed over the worker's answers, is
Wald's sequential probability ratio test of chance level against accuracy `honest`: a worker
whose accuracy is at least `honest` ever reaches log(1000) with probability at most 1/1000,
while a uniform spammer's sum grows by about 0.25 an answer (3 labels, a confident crowd).
Golden answers count with their known truth, so each weighs the most.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import dawid_skene as ds
from .encode import FloatArray, encode

BOUND = math.log(1000.0)
"""The log-likelihood ratio at which "answers at chance" is accepted."""

SKILLS = ds.Shrinkage(np.inf, 16.0)
"""The model that scores answers: one skill per worker, pulled toward the crowd's."""


def chance_evidence(right: FloatArray, n_labels: int, honest: float) -> FloatArray:
    """Per answer, log P(answer | at chance) - log P(answer | right with probability `honest`),
    where `right` is the probability that the answer is right."""
    if n_labels < 2 or honest <= 1.0 / n_labels:  # no accuracy to tell from chance
        return np.zeros(len(right))
    wrong = (1.0 - honest) / (n_labels - 1)
    likely = right * honest + (1.0 - right) * wrong
    return np.asarray(np.log(1.0 / n_labels) - np.log(np.maximum(likely, 1e-12)))


def right_probability(answers: pd.DataFrame, golden: pd.Series, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """q per answer (columns task, worker, label, right): exact on golden tasks, else the
    posterior of the answer's label given the other answers on its task."""
    enc = encode(answers, golden if len(golden) else None, labels)
    k = enc.n_labels
    model = ds.fit(enc, prior=SKILLS)
    own = np.log(np.maximum(model.errors[enc.w, enc.l, :], 1e-12))  # (answers, k)
    total = np.log(np.maximum(model.priors, 1e-12)) + np.stack(
        [np.bincount(enc.t, weights=own[:, c], minlength=enc.n_tasks) for c in range(k)], axis=1
    )
    others = total[enc.t] - own
    others -= others.max(axis=1, keepdims=True)
    posterior = np.exp(others)
    posterior /= posterior.sum(axis=1, keepdims=True)
    right = posterior[np.arange(len(enc.t)), enc.l]
    truth = np.full(enc.n_tasks, -1, dtype=np.int64)
    truth[enc.gold_t] = enc.gold_l
    on_golden = truth[enc.t] >= 0
    right = np.where(on_golden, (truth[enc.t] == enc.l).astype(np.float64), right)
    return pd.DataFrame(
        {
            "task": enc.tasks.to_numpy()[enc.t],
            "worker": enc.workers.to_numpy()[enc.w],
            "label": np.asarray(enc.labels, dtype=object)[enc.l],
            "right": right,
        }
    )


def at_chance(
    answers: pd.DataFrame, golden: pd.Series, honest: float, labels: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per worker (sorted): `scored` answers and `log_ratio`, the evidence that it answers at
    chance rather than with accuracy `honest`; act when log_ratio >= BOUND. `labels` is the
    job's label set (K counts labels nobody gave too)."""
    if answers.empty:
        return pd.DataFrame({"scored": [], "log_ratio": []}, index=pd.Index([], name="worker"))
    scored = right_probability(answers, golden, labels)
    n_labels = len(set(labels or ()) | set(scored["label"]) | set(golden.astype(str)))
    evidence = chance_evidence(scored["right"].to_numpy(), n_labels, honest)
    table = pd.DataFrame({"scored": 1, "log_ratio": evidence}, index=pd.Index(scored["worker"], name="worker"))
    return table.groupby(level=0, sort=True).sum()
