"""The default method: what it picks, and that it holds up on real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aggregation import aggregate
from aggregation.bench import load, pick_golden, score
from aggregation.synthetic import simulate

DATA = Path(os.environ.get("CROWD_DATA_DIR", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))


def test_auto_is_dawid_skene_when_workers_answer_enough() -> None:
    answers, truth = simulate(500, 15, 3, 5, seed=2, spammers=0.2)
    assert aggregate(answers).method == "auto:dawid_skene"
    with_golden = aggregate(answers, golden=truth.iloc[:25])
    assert with_golden.method.startswith("auto:dawid_skene")
    assert len(with_golden) == 475


def test_auto_uses_majority_vote_on_thin_data() -> None:
    answers, _ = simulate(20, 30, 3, 3, seed=1)  # two answers per worker
    assert aggregate(answers).method == "auto:majority_vote"


@pytest.mark.parametrize("name", ["bluebird", "rte"])
def test_auto_is_at_least_dawid_skene_with_the_same_golden(name: str) -> None:
    if not (DATA / name / "labels.csv").exists():
        pytest.skip(f"no data set at {DATA / name}; set CROWD_DATA_DIR")
    answers, truth = load(DATA / name)
    golden = pick_golden(truth)
    target = truth.drop(golden.index)
    auto = score(aggregate(answers, golden=golden), target)
    ds = score(aggregate(answers, "dawid_skene", golden=golden), target)
    plain = score(aggregate(answers, "dawid_skene"), target)
    assert auto >= max(ds, plain)
    assert auto > {"bluebird": 0.88, "rte": 0.93}[name]
