"""Accuracy, calibration and speed of every method on real and simulated crowds.

    python -m aggregation.bench --data /work/shared/data [--json] [--methods auto,dawid_skene]
    python -m aggregation.bench --synthetic 3 --methods all-but-glad [--cache runs.jsonl]
    python -m aggregation.bench --data DIR --synthetic 2 --lodo     # leave one data set out
    python -m aggregation.bench --data DIR --cut 3,5 --methods all-but-glad  # sparse real crowds
    python -m aggregation.bench --data DIR --split 10 --methods all-but-glad  # few answers a worker
    python -m aggregation.bench --scale 1000000   # simulated: items, overlap 10, 5 classes

`--data` reads every folder of it with `labels.csv` (worker,task,label) and `gt.csv`
(task,label); `--synthetic N` adds the crowds of `crowds.SCENARIOS` with seeds 0..N-1; `--cut
K` replaces each real set by its crowds cut to K answers a task drawn at random (`cut`); `--split
K` deals each real worker's answers into pseudo-workers of K answers (`split`; after `--cut`). Box
folders (images.csv, answers.jsonl, gold.jsonl) at or below --data are scored too, one record
per setting, number of workers and method (see aggregation/geometry/bench.py).
Settings: "none" (no golden tasks) and "golden5" (5% of the tasks with ground truth revealed as
golden, drawn with a fixed seed (`--golden-seed`, default 0; the cache is used only with the
default), and scored only on the other 95%). In golden5 the row
"dawid_skene:no_golden" is crowd-kit's default Dawid-Skene, which cannot use golden tasks.
Every record has the expected calibration error (`ece`, 10 bins); "auto" also reports the
method it used and the accuracy of the tasks whose confidence is above 0.9. Without `--json`
a summary follows: per data set and setting, `auto` against the best single method of the same
run. `--cache FILE` keeps the records of methods other than auto (slow ones take minutes) and
reuses them. `--lodo` runs the variants of `LODO_VARIANTS` of auto and prints, for each data
set, the variant that did best on all the others and its result on the one left out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .api import aggregate
from .auto import DEFAULT, Settings
from .crowds import SCENARIOS
from .evaluation import calibration, gaps, leave_one_out, score
from .result import CROWDKIT_VERSION, METHODS

DATASETS = ("bluebird", "dog", "rte", "web", "d_product")
GOLDEN_SHARE = 0.05
SEED = 0
ALL_BUT_GLAD = tuple(m for m in METHODS if m != "glad")

Source = tuple[str, pd.DataFrame, pd.Series]

LODO_VARIANTS: dict[str, Settings] = {
    "default": DEFAULT,
    "no_crowd_alternative": replace(DEFAULT, alternatives=("dawid_skene", "majority_vote")),
    "no_golden_switch": replace(DEFAULT, alternatives=()),
    "no_fold_correction": replace(DEFAULT, fold_correction=False),
    "dawid_skene_end_only": replace(DEFAULT, strengths=(0.5,)),
    "one_coin_end_only": replace(DEFAULT, strengths=(float("inf"),)),
    "even_shape_only": replace(DEFAULT, bias_priors=(float("inf"),)),
    "no_early_stop": replace(DEFAULT, steps=DEFAULT.steps[:1]),
}
"""Settings of auto that were considered while developing it, for `--lodo`."""


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


def folders(data: Path, names: list[str] | None) -> Iterator[Source]:
    """The data sets under `data`: the known ones first, in their usual order."""
    found = sorted(p.parent.name for p in data.glob("*/labels.csv"))
    known = [d for d in DATASETS if d in found] + [d for d in found if d not in DATASETS]
    for name in names or known:
        answers, truth = load(data / name)
        yield name, answers, truth


def cut(sources: Iterable[Source], per_task: Sequence[int], seeds: int = 2) -> Iterator[Source]:
    """Each real data set cut to k answers a task, drawn at random (seeds 0..seeds-1), named
    `name~k:seed`: crowds as sparse as many real jobs (few answers a task and a worker) whose
    workers err as real ones do, which no generator here imitates. Sets with at most k
    answers on every task are left out (the cut would be the set itself)."""
    for name, answers, truth in sources:
        most = int(answers.groupby("task").size().max())
        for k in per_task:
            if k >= most:
                continue
            for seed in range(seeds):
                shuffled = answers.sample(frac=1.0, random_state=seed)
                part = shuffled[shuffled.groupby("task").cumcount() < k]
                yield f"{name}~{k}:{seed}", part, truth[truth.index.isin(part["task"])]


def split(sources: Iterable[Source], per_worker: Sequence[int], seeds: int = 2) -> Iterator[Source]:
    """Each real worker's answers dealt at random (seeds 0..seeds-1) into pseudo-workers of k
    answers each, named `name@k:seed`: crowds of many workers with few answers each (where a
    full confusion matrix overfits) whose workers err as real ones do; answers a task do not
    change. Sets whose busiest worker has at most k answers are left out."""
    for name, answers, truth in sources:
        most = int(answers.groupby("worker").size().max())
        for k in per_worker:
            if k >= most:
                continue
            for seed in range(seeds):
                shuffled = answers.sample(frac=1.0, random_state=seed)
                chunk = (shuffled.groupby("worker").cumcount() // k).astype(str)
                yield f"{name}@{k}:{seed}", shuffled.assign(worker=shuffled["worker"] + "#" + chunk), truth


def kind_of(dataset: str) -> str:
    """The kind of a data set by its name: synthetic (`scenario:seed`), real cut (`name~k:seed`),
    real split (`name@k:seed`) or real."""
    if "@" in dataset:
        return "real split"
    if "~" in dataset:
        return "real cut"
    return "synthetic" if ":" in dataset else "real"


def synthetic(seeds: int) -> Iterator[Source]:
    """Every scenario of `crowds` with seeds 0..seeds-1, named `scenario:seed`."""
    for seed in range(seeds):
        for name, make in SCENARIOS.items():
            answers, truth = make(seed)
            yield f"{name}:{seed}", answers, truth


class Cache:
    """Records of methods other than auto, by (data set, setting, method, crowd-kit)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: dict[tuple[str, ...], dict[str, object]] = {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                self.records[self._key(record)] = record

    @staticmethod
    def _key(record: dict[str, object]) -> tuple[str, ...]:
        return (str(record["dataset"]), str(record["setting"]), str(record["method"]), CROWDKIT_VERSION)

    def get(self, dataset: str, setting: str, method: str) -> dict[str, object] | None:
        return self.records.get((dataset, setting, method, CROWDKIT_VERSION))

    def put(self, record: dict[str, object]) -> None:
        if self.path is None or record["method"] == "auto":
            return
        self.records[self._key(record)] = record
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")


def rows(
    sources: Iterator[Source],
    methods: list[str],
    cache: Cache | None = None,
    settings: Settings = DEFAULT,
    golden_seed: int = SEED,
) -> Iterator[dict[str, object]]:
    """One record per data set, setting and method."""
    cache = cache if cache is not None and golden_seed == SEED else Cache(None)
    for name, answers, truth in sources:
        golden = pick_golden(truth, seed=golden_seed)
        for setting in ("none", "golden5"):
            gold = golden if setting == "golden5" else None
            target = truth.drop(golden.index) if gold is not None else truth
            runs = [(m, m, gold) for m in methods]
            if gold is not None and "dawid_skene" in methods:
                runs.append(("dawid_skene:no_golden", "dawid_skene", None))
            for label, method, run_gold in runs:
                cached = cache.get(name, setting, label)
                if cached is not None:
                    yield cached
                    continue
                start = time.perf_counter()
                result = aggregate(answers, method, golden=run_gold, auto_settings=settings)
                seconds = time.perf_counter() - start
                quality = calibration(result, target)
                record: dict[str, object] = {
                    "dataset": name,
                    "setting": setting,
                    "method": label,
                    "accuracy": round(score(result, target), 4),
                    "seconds": round(seconds, 3),
                    "ece": quality["ece"],
                }
                if method == "auto":
                    record["used"] = result.method
                    record.update(quality)
                cache.put(record)
                yield record


def print_table(records: list[dict[str, object]]) -> None:
    """Accuracy per data set (rows) and method (columns), one block per setting."""
    frame = pd.DataFrame(records)
    for setting, part in frame.groupby("setting", sort=False):
        print(f"\nsetting: {setting}  (accuracy; seconds in brackets)")
        cells = part.assign(cell=[f"{a:.4f} ({s:.1f}s)" for a, s in zip(part.accuracy, part.seconds, strict=True)])
        table = cells.pivot(index="dataset", columns="method", values="cell")
        order = {"index": list(dict.fromkeys(part.dataset)), "columns": list(dict.fromkeys(part.method))}
        print(table.reindex(**order).to_string())
        auto = part[part.method == "auto"]
        for record in auto.to_dict("records"):
            print(
                f"auto on {record['dataset']}: used {record['used']}, ECE {record['ece']}, "
                f"accuracy above 0.9 {record['acc_above_0_9']} "
                f"({record['share_above_0_9']:.0%} of tasks)"
            )


def print_summary(records: list[dict[str, object]]) -> None:
    """auto against the best single method of the same run, per data set and setting."""
    found = gaps(records)
    if not found:
        return
    print("\nauto against the best single method (points; ECE of auto)")
    for gap in found:
        print(
            f"  {gap.dataset:22s} {gap.setting:8s} auto {gap.auto:.4f}  best {gap.best_method:22s} "
            f"{gap.best:.4f}  {gap.points:+5.1f}  ECE {gap.ece:.3f}"
        )
    frame = pd.DataFrame([{"kind": kind_of(g.dataset), "setting": g.setting, "points": g.points} for g in found])
    for (kind, setting), part in frame.groupby(["kind", "setting"]):
        print(
            f"  {kind:9s} {setting:8s} mean {part.points.mean():+.2f}  worst {part.points.min():+.2f}  sets {len(part)}"
        )


def lodo(sources: list[Source], cache: Cache) -> None:
    """Leave one data set out over the variants of auto in `LODO_VARIANTS`."""
    singles = [m for m in ALL_BUT_GLAD if m != "auto"]
    baseline = list(rows(iter(sources), singles, cache))
    by_variant = {}
    for variant, settings in LODO_VARIANTS.items():
        mine = list(rows(iter(sources), ["auto"], settings=settings))
        by_variant[variant] = gaps(baseline + mine)
        mean = np.mean([g.points for g in by_variant[variant]])
        print(f"variant {variant:24s} mean gap over every set and setting {mean:+.2f}", flush=True)
    print("\nleft out          chosen on the others        its gap there   default's gap")
    for held in leave_one_out(by_variant, "default"):
        print(f"  {held.group:18s} {held.chosen:26s} {held.points:+6.2f}        {held.default_points:+6.2f}")


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


def _counts(text: str) -> list[int]:
    """Comma-separated positive integers (argparse type)."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"answers a task must be at least 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, help="folder of data sets")
    parser.add_argument("--synthetic", type=int, default=0, help="also simulated crowds, this many seeds each")
    parser.add_argument("--scale", type=int, help="instead: time auto on this many items")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument("--datasets", help="comma-separated; default: every folder with labels")
    parser.add_argument("--methods", default=",".join(METHODS), help='comma-separated, or "all-but-glad"')
    parser.add_argument("--cache", type=Path, help="JSON lines file keeping records of methods other than auto")
    parser.add_argument("--lodo", action="store_true", help="leave one data set out over auto's variants")
    parser.add_argument("--golden-seed", type=int, default=SEED, help="another draw of the golden tasks")
    parser.add_argument(
        "--cut", type=_counts, help="comma-separated K: each real set cut to K random answers a task instead"
    )
    parser.add_argument("--cut-seeds", type=int, default=2, help="draws of each cut or split (default 2)")
    parser.add_argument(
        "--split", type=_counts, help="comma-separated K: each real worker dealt into pseudo-workers of K answers"
    )
    args = parser.parse_args(argv)
    if args.scale:
        print(json.dumps(scale(args.scale)))
        return
    if args.data is None and not args.synthetic:
        parser.error("--data or --synthetic is required unless --scale is given")
    from .geometry.bench import box_folders, box_rows, print_box_table

    boxes = box_folders(args.data) if args.data is not None else {}
    names = args.datasets.split(",") if args.datasets else None
    sources: list[Source] = []
    if args.data is not None:
        real = folders(args.data, [n for n in names if n not in boxes] if names else None)
        real = cut(real, args.cut, args.cut_seeds) if args.cut else real
        sources += split(real, args.split, args.cut_seeds) if args.split else real
    sources += synthetic(args.synthetic)
    cache = Cache(args.cache)
    if args.lodo:
        lodo(sources, cache)
        return
    methods = list(ALL_BUT_GLAD) if args.methods == "all-but-glad" else args.methods.split(",")
    records = []
    labelled = rows(iter(sources), methods, cache, golden_seed=args.golden_seed)
    for record in itertools.chain(labelled, box_rows(boxes, names or list(boxes))):
        if args.json:
            print(json.dumps(record), flush=True)
        records.append(record)
    if not args.json:
        print_table([r for r in records if "kind" not in r])
        print_summary([r for r in records if "kind" not in r])
        print_box_table([r for r in records if "kind" in r])


if __name__ == "__main__":
    main()
