"""Gaps against the best single method, and leave-one-data-set-out."""

from __future__ import annotations

import pytest

from aggregation.evaluation import Gap, gaps, leave_one_out


def test_gap_is_against_the_best_other_method_of_the_same_run() -> None:
    records = [
        {"dataset": "a", "setting": "none", "method": "auto", "accuracy": 0.90, "ece": 0.02},
        {"dataset": "a", "setting": "none", "method": "mv", "accuracy": 0.85},
        {"dataset": "a", "setting": "none", "method": "ds", "accuracy": 0.91},
        {"dataset": "b", "setting": "none", "method": "mv", "accuracy": 0.8},
    ]
    (gap,) = gaps(records)
    assert (gap.dataset, gap.best_method) == ("a", "ds")
    assert gap.points == pytest.approx(-1.0)


def _gap(dataset: str, points: float) -> Gap:
    return Gap(dataset, "none", 0.5 + points / 100, "x", 0.5, 0.0)


def test_leave_one_out_chooses_on_the_other_groups() -> None:
    """Variant 'tuned' is great on g1 only; left out g1, the others choose 'plain'."""
    by_variant = {
        "plain": [_gap("g1", 0.0), _gap("g2:0", 0.0), _gap("g2:1", 0.0), _gap("g3", 0.0)],
        "tuned": [_gap("g1", 9.0), _gap("g2:0", -1.0), _gap("g2:1", -1.0), _gap("g3", 0.5)],
    }
    held = {h.group: h for h in leave_one_out(by_variant, "plain")}
    assert set(held) == {"g1", "g2", "g3"}  # seeds of one scenario are one group
    assert held["g1"].chosen == "plain" and held["g1"].points == 0.0
    assert held["g2"].chosen == "tuned" and held["g2"].points == pytest.approx(-1.0)
    assert held["g3"].chosen == "tuned" and held["g3"].default_points == 0.0
