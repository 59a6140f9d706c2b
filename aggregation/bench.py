"""Accuracy and speed of every method on the public data sets.

    python -m aggregation.bench --data /work/shared/data [--json] [--methods auto,dawid_skene]
    python -m aggregation.bench --scale 1000000   # simulated: items, overlap 10, 5 classes

Box folders (images.csv, answers.jsonl, gold.jsonl) at or below --data are scored too, one
record per setting, number of workers and method (see aggregation/geometry/bench.py).

Settings: "none" (no golden tasks) and "golden5" (5% of the tasks with ground truth revealed as
golden, drawn with a fixed seed, and scored only on the other 95%). In golden5 the row
"dawid_skene:no_golden" is crowd-kit's default Dawid-Skene, which cannot use golden tasks.
For "auto" it also reports expected calibration error (10 bins) and the accuracy of the tasks
whose confidence is above 0.9.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .api import aggregate
from .result import METHODS, AggregationResult

DATASETS = ("bluebird", "dog", "rte", "web", "d_product")
GOLDEN_SHARE = 0.05
SEED = 0


def load(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Answers and ground truth of one data set (truth only for tasks that have answers)."""
    answers = pd.read_csv(path / "labels.csv", dtype=str)[["task", "worker", "label"]]
    truth = pd.read_csv(path / "gt.csv", dtype=str).set_index("task")["label"]
    return answers, truth[truth.index.isin(answers["task"])]


def pick_golden(truth: pd.Series, share: float = GOLDEN_SHARE, seed: int = SEED) -> pd.Series:
    """A fixed random share of the tasks with ground truth, to reveal as golden."""
    rng = np.random.default_rng(seed)
    tasks = np.sort(truth.index.to_numpy().astype(str))
    chosen = rng.choice(tasks, size=max(1, round(share * len(tasks))), replace=False)
    return truth.loc[np.sort(chosen)]


def calibration(result: AggregationResult, truth: pd.Series) -> dict[str, float]:
    """Expected calibration error over 10 equal-width bins and accuracy above 0.9."""
    scored = truth.index.intersection(result.labels.index)
    conf = result.confidence.loc[scored].to_numpy()
    hit = (result.labels.loc[scored] == truth.loc[scored]).to_numpy().astype(np.float64)
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = sum(
        abs(hit[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean() for b in range(10) if (bins == b).any()
    )
    high = conf > 0.9
    return {
        "ece": round(float(ece), 4),
        "acc_above_0_9": round(float(hit[high].mean()), 4) if high.any() else float("nan"),
        "share_above_0_9": round(float(high.mean()), 4),
    }


def score(result: AggregationResult, truth: pd.Series) -> float:
    """Accuracy over tasks with ground truth that were aggregated."""
    scored = truth.index.intersection(result.labels.index)
    return float((result.labels.loc[scored] == truth.loc[scored]).mean())


def rows(data: Path, datasets: list[str], methods: list[str]) -> Iterator[dict[str, object]]:
    """One record per data set, setting and method."""
    for name in datasets:
        answers, truth = load(data / name)
        golden = pick_golden(truth)
        for setting in ("none", "golden5"):
            gold = golden if setting == "golden5" else None
            target = truth.drop(golden.index) if gold is not None else truth
            runs = [(m, m, gold) for m in methods]
            if gold is not None and "dawid_skene" in methods:
                runs.append(("dawid_skene:no_golden", "dawid_skene", None))
            for label, method, run_gold in runs:
                start = time.perf_counter()
                result = aggregate(answers, method, golden=run_gold)
                seconds = time.perf_counter() - start
                record: dict[str, object] = {
                    "dataset": name,
                    "setting": setting,
                    "method": label,
                    "accuracy": round(score(result, target), 4),
                    "seconds": round(seconds, 3),
                }
                if method == "auto":
                    record["used"] = result.method
                    record.update(calibration(result, target))
                yield record


def print_table(records: list[dict[str, object]]) -> None:
    """Accuracy per data set (rows) and method (columns), one block per setting."""
    frame = pd.DataFrame(records)
    for setting, part in frame.groupby("setting", sort=False):
        print(f"\nsetting: {setting}  (accuracy; seconds in brackets)")
        cells = part.assign(cell=[f"{a:.4f} ({s:.1f}s)" for a, s in zip(part.accuracy, part.seconds, strict=True)])
        table = cells.pivot(index="dataset", columns="method", values="cell")
        print(table.reindex(columns=list(dict.fromkeys(part.method))).to_string())
        auto = part[part.method == "auto"]
        for record in auto.to_dict("records"):
            print(
                f"auto on {record['dataset']}: used {record['used']}, ECE {record['ece']}, "
                f"accuracy above 0.9 {record['acc_above_0_9']} "
                f"({record['share_above_0_9']:.0%} of tasks)"
            )


def scale(n_items: int) -> dict[str, object]:
    """Time "auto" on a simulated crowd: overlap 10, one worker per 50 items, 5 classes."""
    import resource

    from .synthetic import simulate

    answers, truth = simulate(n_items, max(n_items // 50, 10), 5, 10, seed=SEED)
    start = time.perf_counter()
    result = aggregate(answers)
    return {
        "answers": len(answers),
        "method": result.method,
        "accuracy": round(score(result, truth), 4),
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, help="folder of data sets")
    parser.add_argument("--scale", type=int, help="instead: time auto on this many items")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument("--datasets", help="comma-separated; default: every folder with labels")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args(argv)
    if args.scale:
        print(json.dumps(scale(args.scale)))
        return
    if args.data is None:
        parser.error("--data is required unless --scale is given")
    from .geometry.bench import box_folders, box_rows, print_box_table

    found = sorted(p.parent.name for p in args.data.glob("*/labels.csv"))
    known = [d for d in DATASETS if d in found] + [d for d in found if d not in DATASETS]
    boxes = box_folders(args.data)
    datasets = args.datasets.split(",") if args.datasets else known + list(boxes)
    records = []
    labelled = rows(args.data, [d for d in datasets if d not in boxes], args.methods.split(","))
    for record in itertools.chain(labelled, box_rows(boxes, datasets)):
        if args.json:
            print(json.dumps(record), flush=True)
        records.append(record)
    if not args.json:
        print_table([r for r in records if "kind" not in r])
        print_box_table([r for r in records if "kind" in r])


if __name__ == "__main__":
    main()
