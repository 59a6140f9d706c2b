"""The benchmark runs end to end on a tiny data set folder and prints what it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregation.bench import main
from aggregation.synthetic import simulate


def test_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers, truth = simulate(200, 10, 2, 5, seed=0, spammers=0.2)
    (tmp_path / "toy").mkdir()
    answers[["worker", "task", "label"]].to_csv(tmp_path / "toy" / "labels.csv", index=False)
    truth.rename_axis("task").reset_index().to_csv(tmp_path / "toy" / "gt.csv", index=False)
    main(["--data", str(tmp_path), "--json", "--methods", "auto,majority_vote,dawid_skene"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["setting"], r["method"]) for r in records} == {
        ("none", "auto"),
        ("none", "majority_vote"),
        ("none", "dawid_skene"),
        ("golden5", "auto"),
        ("golden5", "majority_vote"),
        ("golden5", "dawid_skene"),
        ("golden5", "dawid_skene:no_golden"),
    }
    auto = next(r for r in records if r["method"] == "auto" and r["setting"] == "none")
    assert auto["dataset"] == "toy"
    assert 0.8 < auto["accuracy"] <= 1.0
    assert 0.0 <= auto["ece"] <= 1.0
    assert "acc_above_0_9" in auto and auto["seconds"] >= 0


def test_scale_mode(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--scale", "1000"])
    record = json.loads(capsys.readouterr().out)
    assert record["answers"] == 10_000
    assert record["method"].startswith("auto:one_coin_dawid_skene")  # simulate() draws one-coin workers
    assert record["accuracy"] > 0.95
