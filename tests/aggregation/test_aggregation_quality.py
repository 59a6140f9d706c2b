"""golden_scores() and agreement() on frames with hand-computed answers."""

from __future__ import annotations

import pandas as pd
import pytest
from frames_aggregation import frame

from aggregation import agreement, golden_scores

ANSWERS = frame(
    [
        ("g1", "ann", "cat"),
        ("g2", "ann", "dog"),
        ("g1", "bob", "dog"),
        ("t1", "bob", "cat"),
        ("t1", "cid", "cat"),
        ("t2", "cid", "dog"),
    ]
)
GOLDEN = pd.Series({"g1": "cat", "g2": "dog", "g3": "cat"})


def test_golden_scores_are_smoothed_counts() -> None:
    scores = golden_scores(ANSWERS, GOLDEN)
    assert list(scores.index) == ["ann", "bob", "cid"]
    assert scores["golden_seen"].to_dict() == {"ann": 2, "bob": 1, "cid": 0}
    assert scores["golden_correct"].to_dict() == {"ann": 2, "bob": 0, "cid": 0}
    assert scores.loc["ann", "golden_accuracy"] == pytest.approx(3 / 4)
    assert scores.loc["bob", "golden_accuracy"] == pytest.approx(1 / 3)
    assert scores.loc["cid", "golden_accuracy"] == pytest.approx(1 / 2)


def test_one_of_one_is_not_a_perfect_score() -> None:
    one = frame([("g1", "eve", "cat")])
    assert golden_scores(one, GOLDEN).loc["eve", "golden_accuracy"] < 1.0
    strict = golden_scores(one, GOLDEN, prior_correct=0.0, prior_wrong=0.0)
    assert strict.loc["eve", "golden_accuracy"] == 1.0


def test_agreement_counts_only_aggregated_tasks() -> None:
    labels = pd.Series({"t1": "cat", "t2": "cat"})
    result = agreement(ANSWERS, labels)
    assert result.to_dict() == {"bob": 1.0, "cid": 0.5}  # ann answered no aggregated task
