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


def test_synthetic_mode_with_a_summary_and_a_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aggregation import bench

    monkeypatch.setattr(bench, "SCENARIOS", {"toy": lambda seed: simulate(150, 8, 2, 4, seed=seed)})
    cache = tmp_path / "runs.jsonl"
    main(["--synthetic", "2", "--methods", "auto,majority_vote", "--cache", str(cache)])
    out = capsys.readouterr().out
    assert "auto against the best single method" in out
    assert "toy:0" in out and "toy:1" in out
    assert "synthetic golden5" in out and "synthetic none" in out
    kept = [json.loads(line) for line in cache.read_text().splitlines()]
    assert {r["method"] for r in kept} == {"majority_vote"}  # auto is never cached
    assert len(kept) == 4
    main(["--synthetic", "2", "--methods", "auto,majority_vote", "--cache", str(cache), "--json"])
    assert len(cache.read_text().splitlines()) == 4  # reused, not recomputed
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all("ece" in r for r in records)


def test_cut_real_sets_to_k_random_answers_a_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aggregation.bench import cut
    from aggregation.evaluation import group_of

    answers, truth = simulate(120, 12, 3, 5, seed=1)
    sources = [("toy", answers, truth)]
    crowds = list(cut(sources, [2, 5], seeds=2))
    assert [name for name, _, _ in crowds] == ["toy~2:0", "toy~2:1"]  # 5 a task already: no cut at 5
    (_, first, first_truth), (_, second, _) = crowds[0], crowds[1]
    assert set(first.groupby("task").size()) == {2}
    assert first_truth.index.equals(truth.index)
    kept = first.merge(answers, on=["task", "worker", "label"])
    assert len(kept) == len(first)  # real answers, not made up
    assert (
        not first.sort_values(["task", "worker"])
        .reset_index(drop=True)
        .equals(second.sort_values(["task", "worker"]).reset_index(drop=True))
    )  # the seeds draw different answers
    assert group_of("toy~2:1") == group_of("toy") == "toy"

    (tmp_path / "toy").mkdir()
    answers[["worker", "task", "label"]].to_csv(tmp_path / "toy" / "labels.csv", index=False)
    truth.rename_axis("task").reset_index().to_csv(tmp_path / "toy" / "gt.csv", index=False)
    main(["--data", str(tmp_path), "--cut", "3", "--cut-seeds", "1", "--methods", "auto,majority_vote"])
    out = capsys.readouterr().out
    assert "toy~3:0" in out and "real cut  golden5" in out
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path), "--cut", "three"])
    assert "expected comma-separated integers" in capsys.readouterr().err


def test_split_real_workers_into_pseudo_workers_of_k_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aggregation.bench import split
    from aggregation.evaluation import group_of

    answers, truth = simulate(120, 12, 3, 5, seed=1)
    answers = answers.astype({"worker": str, "task": str, "label": str})
    busiest = int(answers.groupby("worker").size().max())
    crowds = list(split([("toy", answers, truth)], [7, busiest], seeds=2))
    assert [name for name, _, _ in crowds] == ["toy@7:0", "toy@7:1"]  # no split at the busiest's count
    (_, first, first_truth), (_, second, _) = crowds
    assert first.groupby("worker").size().max() == 7
    assert first.groupby("task").size().sort_index().equals(answers.groupby("task").size().sort_index())
    real = first.assign(worker=first["worker"].str.split("#").str[0])
    assert len(real.merge(answers, on=["task", "worker", "label"])) == len(answers)  # same answers, relabelled
    assert first["worker"].nunique() > answers["worker"].nunique()
    assert (
        not first.sort_values(["task", "worker"])["worker"]
        .reset_index(drop=True)
        .equals(second.sort_values(["task", "worker"])["worker"].reset_index(drop=True))
    )  # the seeds deal differently
    assert first_truth.equals(truth)
    assert group_of("toy@7:1") == group_of("toy~3:0@7:1") == "toy"

    (tmp_path / "toy").mkdir()
    answers[["worker", "task", "label"]].to_csv(tmp_path / "toy" / "labels.csv", index=False)
    truth.rename_axis("task").reset_index().to_csv(tmp_path / "toy" / "gt.csv", index=False)
    main(["--data", str(tmp_path), "--split", "7", "--cut-seeds", "1", "--methods", "auto,majority_vote"])
    out = capsys.readouterr().out
    assert "toy@7:0" in out and "real split golden5" in out
