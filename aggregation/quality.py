"""Worker quality from golden tasks and from agreement with the aggregate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .encode import check_answers


def golden_scores(
    answers: pd.DataFrame,
    golden: pd.Series,
    prior_correct: float = 1.0,
    prior_wrong: float = 1.0,
) -> pd.DataFrame:
    """Per worker golden_seen, golden_correct and a smoothed golden_accuracy.

    The Beta prior keeps a worker who got 1 of 1 right away from 100%, so ban rules do not
    fire on one lucky or unlucky answer. Workers who answered no golden task get seen 0 and
    the prior mean; index: every worker in `answers`, sorted.
    """
    frame = check_answers(answers)
    gold = golden.astype(str).set_axis(golden.index.astype(str))
    gold = gold[~gold.index.duplicated(keep="first")]
    truth = frame["task"].map(gold)
    seen_mask = truth.notna().to_numpy()
    correct_mask = seen_mask & (frame["label"].to_numpy() == truth.to_numpy())
    by_worker = (
        pd.DataFrame(
            {
                "golden_seen": seen_mask.astype(np.int64),
                "golden_correct": correct_mask.astype(np.int64),
            }
        )
        .groupby(frame["worker"].to_numpy(), sort=True)
        .sum()
    )
    by_worker.index.name = "worker"
    denom = by_worker["golden_seen"] + prior_correct + prior_wrong
    by_worker["golden_accuracy"] = (by_worker["golden_correct"] + prior_correct) / denom
    return by_worker.astype({"golden_seen": np.int64, "golden_correct": np.int64})


def agreement(answers: pd.DataFrame, labels: pd.Series) -> pd.Series:
    """Per worker, the share of answers on aggregated tasks equal to the aggregate label;
    a skill estimate for workers who never met a golden task."""
    frame = check_answers(answers)
    agg = labels.astype(str).set_axis(labels.index.astype(str))
    agg = agg[~agg.index.duplicated(keep="first")]
    truth = frame["task"].map(agg)
    mask = truth.notna().to_numpy()
    hits = pd.Series(
        (frame["label"].to_numpy()[mask] == truth.to_numpy()[mask]).astype(np.float64),
        index=pd.Index(frame["worker"].to_numpy()[mask], name="worker"),
    )
    result = hits.groupby(level=0, sort=True).mean()
    result.index.name = "worker"
    return result.rename("agreement")
