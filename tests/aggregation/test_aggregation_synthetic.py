"""The simulator: shapes, distinct workers per item, and accuracies that hold."""

from __future__ import annotations

import pytest

from aggregation.synthetic import simulate


def test_shape_and_distinct_workers() -> None:
    answers, truth = simulate(100, 7, 3, 4, seed=0)
    assert len(answers) == 400
    assert len(truth) == 100
    assert answers.groupby("task")["worker"].nunique().eq(4).all()
    assert set(answers["label"]) <= {"0", "1", "2"}


def test_perfect_and_chance_workers() -> None:
    answers, truth = simulate(2000, [1.0, 1.0, 0.5], 2, 3, seed=4)
    hit = answers["label"].to_numpy() == truth.loc[answers["task"]].to_numpy()
    by_worker = answers.assign(hit=hit).groupby("worker")["hit"].mean()
    assert by_worker["w0"] == 1.0
    assert by_worker["w2"] == pytest.approx(0.5, abs=0.05)


def test_spammers_and_seed() -> None:
    first = simulate(50, 10, 4, 3, seed=9, spammers=0.5)[0]
    again = simulate(50, 10, 4, 3, seed=9, spammers=0.5)[0]
    assert first.equals(again)
    with pytest.raises(ValueError):
        simulate(5, 2, 2, 3)


def test_every_scenario_is_seeded_and_has_its_shape() -> None:
    from aggregation.crowds import SCENARIOS

    for name, make in SCENARIOS.items():
        answers, truth = make(5)
        assert answers.equals(make(5)[0]), name
        assert set(answers["task"]) == set(truth.index), name
        assert not answers.duplicated(["task", "worker"]).any(), name


def test_scenarios_draw_what_they_say() -> None:
    from aggregation.crowds import heavy_tail_binary, imbalanced, spammers, sparse

    per_worker = sparse(0)[0].groupby("worker").size()
    assert per_worker.median() <= 5
    assert 10 <= heavy_tail_binary(0)[0].groupby("worker").size().median() <= 20
    assert imbalanced(0)[1].value_counts(normalize=True).iloc[0] > 0.75
    answers, _ = spammers(0)
    one_label = answers.groupby("worker")["label"].nunique() == 1
    assert one_label.sum() == 5  # the workers who always give the same label
