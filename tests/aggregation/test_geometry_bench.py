"""The box benchmark runs end to end on a tiny box folder and prints what it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from frames_geometry import synthetic_boxes

from aggregation.bench import main
from aggregation.geometry.bench import main as geometry_main


def write_box_folder(folder: Path) -> None:
    frame, truth = synthetic_boxes(n_images=40, seed=8, good=6, noise=0.05)
    folder.mkdir(parents=True)
    (folder / "images.csv").write_text("image,width,height\n" + "".join(f"{t},640,480\n" for t in truth.index))
    lines = [
        json.dumps({"image": t, "worker": w, "boxes": [o["bbox"] for o in v["objects"]]})
        for t, w, v in frame.itertuples(index=False)
    ]
    (folder / "answers.jsonl").write_text("\n".join(lines) + "\n")
    gold = [json.dumps({"image": t, "boxes": [o["bbox"] for o in v["objects"]]}) for t, v in truth.items()]
    (folder / "gold.jsonl").write_text("\n".join(gold) + "\n")


def test_box_folders_print_one_line_per_setting_workers_and_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_box_folder(tmp_path / "boxes" / "toy")
    main(["--data", str(tmp_path), "--json"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["setting"], r["workers"], r["method"]) for r in records} == {
        (s, k, m)
        for s in ("none", "golden5")
        for k in (1, 3, 5, 7)
        for m in ("median", "box_fusion", "box_fusion:no_habits")
    }
    assert all(
        set(r) == {"dataset", "kind", "setting", "workers", "method", "miou", "precision", "recall", "f1", "seconds"}
        for r in records
    )
    assert {(r["dataset"], r["kind"]) for r in records} == {("toy", "boxes")}
    ours = next(r for r in records if (r["setting"], r["workers"], r["method"]) == ("golden5", 3, "box_fusion"))
    single = next(r for r in records if (r["setting"], r["workers"], r["method"]) == ("golden5", 1, "median"))
    assert ours["f1"] > 0.95 and ours["miou"] > single["miou"]


def test_dynamic_overlap_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_box_folder(tmp_path / "toy")
    geometry_main(["--data", str(tmp_path / "toy"), "--overlap"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    fixed = {r["overlap"]: r for r in records if r["overlap"].startswith("fixed")}
    dynamic = [r for r in records if r["overlap"].startswith("dynamic")]
    assert set(fixed) == {f"fixed {k}" for k in range(2, 8)}
    assert all(2 <= r["answers_per_item"] <= 7 for r in dynamic)
    # A stricter target asks for at least as many answers.
    used = [r["answers_per_item"] for r in sorted(dynamic, key=lambda r: float(r["overlap"].split()[1]))]
    assert used == sorted(used)
