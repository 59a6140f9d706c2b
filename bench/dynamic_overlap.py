"""How many answers dynamic overlap saves at equal accuracy, against fixed overlap.

    python -m bench.dynamic_overlap --data ../shared/data [--method auto] [--target 0.95] [--datasets web,dog]

For each real data set (labels.csv, gt.csv) and a simulated crowd, every task's answers are
revealed in file order, as workers would arrive. Fixed overlap k uses the first k answers of
every task. Dynamic overlap (min 2 .. max K, the same policy as the marketplace's
`dynamic_overlap.extend_unsure`) starts every task with 2 answers, then, round by round,
re-aggregates and gives one more answer to every task whose confidence is under the target,
until no task asks for more. It prints answers used and accuracy for both.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import aggregation
from aggregation.synthetic import simulate


def _ranked(answers: pd.DataFrame) -> pd.DataFrame:
    frame = answers.astype(str).reset_index(drop=True)
    frame["rank"] = frame.groupby("task").cumcount()
    return frame


def _accuracy(labels: pd.Series, truth: pd.Series) -> float:
    common = labels.index.intersection(truth.index)
    return float((labels[common] == truth[common]).mean())


def fixed(frame: pd.DataFrame, truth: pd.Series, k: int, method: str) -> tuple[int, float]:
    used = frame[frame["rank"] < k]
    result = aggregation.aggregate(used[["task", "worker", "label"]], method=method)
    return len(used), _accuracy(result.labels, truth)


def dynamic(
    frame: pd.DataFrame, truth: pd.Series, low: int, high: int, target: float, method: str
) -> tuple[int, float]:
    allowed = pd.Series(low, index=frame["task"].unique())
    available = frame.groupby("task").size()
    while True:
        used = frame[frame["rank"] < allowed.reindex(frame["task"]).to_numpy()]
        result = aggregation.aggregate(used[["task", "worker", "label"]], method=method)
        unsure = result.confidence[result.confidence < target].index
        grow = [t for t in unsure if allowed[t] < min(high, available[t])]
        if not grow:
            return len(used), _accuracy(result.labels, truth)
        allowed[grow] += 1


def run(name: str, answers: pd.DataFrame, truth: pd.Series, method: str, target: float) -> None:
    frame = _ranked(answers)
    high = int(frame.groupby("task").size().median())
    print(f"\n{name}: {frame['task'].nunique()} tasks, up to {high} answers each (median)")
    for k in range(2, high + 1):
        n, acc = fixed(frame, truth, k, method)
        print(f"  fixed overlap {k:>2}: {n:>6} answers, accuracy {acc:.3f}")
    n, acc = dynamic(frame, truth, 2, high, target, method)
    print(f"  dynamic 2..{high} target {target}: {n:>6} answers, accuracy {acc:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--method", default="auto", choices=aggregation.METHODS)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--datasets", help="comma-separated folder names; default: all")
    args = parser.parse_args()
    wanted = set(args.datasets.split(",")) if args.datasets else None
    answers, truth = simulate(3000, 40, 4, overlap=7, seed=1, spammers=0.1)
    run("simulated (40 workers, 10% spammers, 4 classes)", answers, truth, args.method, args.target)
    for folder in sorted(p for p in args.data.iterdir() if (p / "labels.csv").exists()):
        if wanted is not None and folder.name not in wanted:
            continue
        labels = pd.read_csv(folder / "labels.csv", dtype=str)
        gt = pd.read_csv(folder / "gt.csv", dtype=str).set_index("task")["label"]
        run(folder.name, labels[["task", "worker", "label"]], gt, args.method, args.target)


if __name__ == "__main__":
    main()
