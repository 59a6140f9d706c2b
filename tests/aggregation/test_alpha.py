"""Krippendorff's alpha per job (`aggregation/alpha.py`)."""

from __future__ import annotations

import pandas as pd

from aggregation.alpha import label_alpha, set_distance


def frame(labels: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"task": ["X", "X", "Y", "Y", "Z", "Z"], "worker": ["A", "B"] * 3, "label": labels})


def test_labels_as_crowd_kit_computes_them() -> None:
    assert label_alpha(frame(["Yes", "Yes", "No", "No", "Yes", "No"])) == 0.4444  # crowd-kit's own example


def test_label_sets_with_the_jaccard_distance_two_empty_sets_agreeing() -> None:
    assert set_distance(frozenset(), frozenset()) == 0.0 and set_distance(frozenset("a"), frozenset("ab")) == 0.5
    sets = [frozenset({"a"}), frozenset({"a"}), frozenset(), frozenset(), frozenset({"b"}), frozenset({"b"})]
    assert label_alpha(frame(sets)) == 1.0


def test_no_task_with_two_answers_has_no_alpha() -> None:
    assert label_alpha(pd.DataFrame({"task": ["X", "Y"], "worker": ["A", "A"], "label": ["a", "b"]})) is None
    assert label_alpha(pd.DataFrame({"task": [], "worker": [], "label": []})) is None


def test_only_the_first_tasks_count() -> None:
    agreeing = frame(["Yes", "Yes", "No", "No", "Yes", "Yes"])
    both = pd.concat([agreeing, frame(["Yes", "No"] * 3).assign(task=["x1", "x1", "x2", "x2", "x3", "x3"])])
    assert label_alpha(both, max_tasks=3) == 1.0 and label_alpha(both) < 1.0
