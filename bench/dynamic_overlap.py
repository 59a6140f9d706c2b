"""How many answers dynamic overlap saves at equal accuracy, against fixed overlap.

    python -m bench.dynamic_overlap --data ../shared/data [--method auto] [--target 0.95] [--datasets web,dog]
        [--golden 0.05]

For each real data set (labels.csv, gt.csv) and a simulated crowd, every task's answers are
revealed in file order, as workers would arrive. Fixed overlap k uses the first k answers of
every task. Dynamic overlap (min 2 .. max K, the same policy as the marketplace's
`dynamic_overlap.extend_unsure`) starts every task with 2 answers, then, round by round,
re-aggregates and gives one more answer to every task whose confidence is under the target,
until no task asks for more. It prints answers used and accuracy for both. With `--golden
SHARE`, that share of the tasks (drawn as `aggregation.bench` draws them) is golden, as in the
marketplace where golden items calibrate the confidence: all their answers are there from the
start, clamped to the truth, and they are neither extended, counted nor scored.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import aggregation
from aggregation.bench import pick_golden
from aggregation.synthetic import simulate


def _ranked(answers: pd.DataFrame) -> pd.DataFrame:
    frame = answers.astype(str).reset_index(drop=True)
    frame["rank"] = frame.groupby("task").cumcount()
    return frame


def _accuracy(labels: pd.Series, truth: pd.Series) -> float:
    common = labels.index.intersection(truth.index)
    return float((labels[common] == truth[common]).mean())


@dataclass(frozen=True)
class Golden:
    """Golden tasks: their labels, and all their answers (present from the start)."""

    labels: pd.Series
    answers: pd.DataFrame


def _aggregate(frame: pd.DataFrame, golden: Golden | None, method: str) -> aggregation.AggregationResult:
    """Real tasks' answers in `frame`, plus every answer of the golden tasks."""
    answers = frame[["task", "worker", "label"]]
    if golden is None:
        return aggregation.aggregate(answers, method=method)
    answers = pd.concat([answers, golden.answers], ignore_index=True)
    return aggregation.aggregate(answers, method=method, golden=golden.labels)


def fixed(frame: pd.DataFrame, truth: pd.Series, k: int, method: str, golden: Golden | None) -> tuple[int, float]:
    used = frame[frame["rank"] < k]
    result = _aggregate(used, golden, method)
    return len(used), _accuracy(result.labels, truth)


def dynamic(
    frame: pd.DataFrame, truth: pd.Series, low: int, high: int, target: float, method: str, golden: Golden | None
) -> tuple[int, float]:
    allowed = pd.Series(low, index=frame["task"].unique())
    available = frame.groupby("task").size()
    while True:
        used = frame[frame["rank"] < allowed.reindex(frame["task"]).to_numpy()]
        result = _aggregate(used, golden, method)
        confidence = result.confidence.reindex(allowed.index)
        unsure = confidence[confidence < target].index
        grow = [t for t in unsure if allowed[t] < min(high, available[t])]
        if not grow:
            return len(used), _accuracy(result.labels, truth)
        allowed[grow] += 1


def run(name: str, answers: pd.DataFrame, truth: pd.Series, method: str, target: float, golden_share: float) -> None:
    frame = _ranked(answers)
    golden = None
    if golden_share > 0:
        labels = pick_golden(truth[truth.index.isin(frame["task"])], share=golden_share)
        is_golden = frame["task"].isin(labels.index)
        golden = Golden(labels, frame.loc[is_golden, ["task", "worker", "label"]])
        frame, truth = frame[~is_golden], truth.drop(labels.index)
    high = int(frame.groupby("task").size().median())
    extra = f", {len(golden.labels)} more golden" if golden is not None else ""
    print(f"\n{name}: {frame['task'].nunique()} tasks{extra}, up to {high} answers each (median)")
    for k in range(2, high + 1):
        n, acc = fixed(frame, truth, k, method, golden)
        print(f"  fixed overlap {k:>2}: {n:>6} answers, accuracy {acc:.3f}")
    n, acc = dynamic(frame, truth, 2, high, target, method, golden)
    print(f"  dynamic 2..{high} target {target}: {n:>6} answers, accuracy {acc:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--method", default="auto", choices=aggregation.METHODS)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--datasets", help="comma-separated folder names; default: all")
    parser.add_argument("--golden", type=float, default=0.0, help="share of the tasks made golden (default none)")
    args = parser.parse_args()
    wanted = set(args.datasets.split(",")) if args.datasets else None
    answers, truth = simulate(3000, 40, 4, overlap=7, seed=1, spammers=0.1)
    run("simulated (40 workers, 10% spammers, 4 classes)", answers, truth, args.method, args.target, args.golden)
    for folder in sorted(p for p in args.data.iterdir() if (p / "labels.csv").exists()):
        if wanted is not None and folder.name not in wanted:
            continue
        labels = pd.read_csv(folder / "labels.csv", dtype=str)
        gt = pd.read_csv(folder / "gt.csv", dtype=str).set_index("task")["label"]
        run(folder.name, labels[["task", "worker", "label"]], gt, args.method, args.target, args.golden)


if __name__ == "__main__":
    main()
