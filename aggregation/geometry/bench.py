"""Quality and speed of box aggregation on crowd box folders, and the dynamic-overlap replay.

    python -m aggregation.geometry.bench --data ../shared/data/boxes [--json] [--overlap]

A box folder holds `images.csv` (image, width, height), `answers.jsonl` ({"image", "worker",
"boxes": [[x, y, w, h], ...]}, one line per worker and image, an empty list when the worker
drew nothing) and `gold.jsonl` ({"image", "boxes"}). For k in 1, 3, 5, 7 the first k answers
of every image (in file order) are aggregated, in two settings: `none`, and `golden5` (gold
revealed for 5% of the images, drawn with seed 0, and scoring on the other 95%). Scores pool
every scored image: boxes are matched to the gold by the Hungarian method on IoU (a match
needs IoU >= 0.5); mIoU is the mean IoU of the matched pairs, precision and recall are
matches over fused and over gold boxes, F1 their harmonic mean.

The anchor, `median`: the first k workers' boxes clustered by IoU (as `aggregate_objects`
clusters them: workers in order, each one's boxes matched by the Hungarian method to the
clusters so far on the mean IoU with their members, >= 0.5), a cluster kept when at least half
of the k workers drew it, its box the per-coordinate median of (x, y, w, h).

`--overlap` replays each image's answers in a random order (seeds 0 .. --seeds - 1), asking for one more
answer until `answers_agree` says the answers so far agree (from 2 answers, up to all 7),
for several targets; it prints the answers used against the quality of `box_fusion` (golden5)
next to fixed overlaps in the same random order.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .agreement import answers_agree
from .clustering import cluster_objects
from .matching import match
from .objects import aggregate_geometry
from .shapes import box_iou, boxes_xyxy

LABEL = "object"
WORKERS = (1, 3, 5, 7)
GOLDEN_SHARE = 0.05
SEED = 0
THRESHOLD = 0.5
METHODS = ("median", "box_fusion", "box_fusion:no_habits")
TARGETS = (0.6, 0.7, 0.75, 0.8, 0.85)
SPEC: dict[str, Any] = {"labels": [LABEL], "iou_threshold": THRESHOLD}


def box_folders(root: Path) -> dict[str, Path]:
    """Box folders at `root`, below it, or two levels below, by folder name."""
    found: dict[str, Path] = {}
    for pattern in ("answers.jsonl", "*/answers.jsonl", "*/*/answers.jsonl"):
        for path in sorted(root.glob(pattern)):
            folder = path.parent
            if (folder / "images.csv").exists() and (folder / "gold.jsonl").exists():
                found.setdefault(folder.name, folder)
    return found


def _objects(boxes: Sequence[Sequence[float]]) -> dict[str, Any]:
    return {"objects": [{"label": LABEL, "bbox": list(b)} for b in boxes]}


def load_boxes(folder: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Answers (task, worker, value, rank: the answer's place among its image's lines) and
    gold values by task."""
    rows = [json.loads(line) for line in (folder / "answers.jsonl").read_text().splitlines() if line.strip()]
    answers = pd.DataFrame(
        {
            "task": [str(r["image"]) for r in rows],
            "worker": [str(r["worker"]) for r in rows],
            "value": [_objects(r["boxes"]) for r in rows],
        }
    )
    answers["rank"] = answers.groupby("task").cumcount()
    gold_rows = [json.loads(line) for line in (folder / "gold.jsonl").read_text().splitlines() if line.strip()]
    gold = pd.Series({str(r["image"]): _objects(r["boxes"]) for r in gold_rows}, dtype=object)
    return answers, gold


def pick_golden(tasks: Sequence[str], share: float = GOLDEN_SHARE, seed: int = SEED) -> list[str]:
    """A fixed random share of the tasks (as `aggregation.bench` picks golden tasks)."""
    rng = np.random.default_rng(seed)
    ordered = np.sort(np.asarray(tasks, dtype=str))
    return sorted(rng.choice(ordered, size=max(1, round(share * len(ordered))), replace=False).tolist())


def evaluate(predicted: dict[str, Any], gold: pd.Series) -> dict[str, float]:
    """Pooled mIoU of matched boxes, precision, recall and F1 over the tasks of `gold`."""
    ious: list[float] = []
    n_predicted = n_gold = 0
    for task, value in gold.items():
        truth = boxes_xyxy(value["objects"])
        mine = boxes_xyxy(predicted.get(str(task), {"objects": []})["objects"])
        n_predicted, n_gold = n_predicted + len(mine), n_gold + len(truth)
        if len(mine) and len(truth):
            sim = box_iou(mine, truth)
            rows, cols = match(sim, THRESHOLD)
            ious.extend(sim[rows, cols].tolist())
    precision = len(ious) / n_predicted if n_predicted else 0.0
    recall = len(ious) / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "miou": round(float(np.mean(ious)), 4) if ious else 0.0,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def median_of_k(answers: pd.DataFrame, k: int) -> dict[str, Any]:
    """The anchor (module docstring), per task."""
    fused: dict[str, Any] = {}
    for task, group in answers.groupby("task", sort=True):
        objects = [o for v in group["value"] for o in v["objects"]]
        owners = np.concatenate([np.full(len(v["objects"]), i, dtype=np.int64) for i, v in enumerate(group["value"])])
        kept: list[list[float]] = []
        if objects:
            corners = boxes_xyxy(objects)
            cluster = cluster_objects(box_iou(corners, corners), owners, [LABEL] * len(objects), THRESHOLD)
            xywh = np.asarray([o["bbox"] for o in objects], dtype=np.float64)
            for c in range(int(cluster.max()) + 1):
                if (cluster == c).sum() >= k / 2:
                    kept.append(np.median(xywh[cluster == c], axis=0).round(2).tolist())
        fused[str(task)] = _objects(kept)
    return fused


def fused_boxes(answers: pd.DataFrame, gold: dict[str, Any], habits: bool) -> dict[str, Any]:
    """`box_fusion` (aggregate_objects for boxes), values by task. Image sizes are not passed,
    so fused boxes are not clipped to the image: the gold of the pedestrians reaches past the
    frame size that images.csv gives (149 of 826 gold boxes end below y = 721)."""
    spec = {**SPEC, "learn_habits": habits}
    frame = answers[["task", "worker", "value"]].sort_values(["task", "worker"], kind="stable").reset_index(drop=True)
    result = aggregate_geometry("bbox", frame, spec, gold, {}, THRESHOLD)
    return {str(t): v for t, v in result.values.items()}


def run(method: str, answers: pd.DataFrame, k: int, gold: dict[str, Any]) -> dict[str, Any]:
    if method == "median":
        return median_of_k(answers, k)
    return fused_boxes(answers, gold, habits=method == "box_fusion")


def box_rows(folders: dict[str, Path], datasets: Sequence[str] | None = None) -> Iterator[dict[str, object]]:
    """One record per box data set, setting, number of workers and method."""
    for name, folder in folders.items():
        if datasets is not None and name not in datasets:
            continue
        answers, gold = load_boxes(folder)
        golden = pick_golden(list(gold.index))
        most = int(answers.groupby("task").size().max())
        for setting in ("none", "golden5"):
            revealed = {t: gold[t] for t in golden} if setting == "golden5" else {}
            target = gold.drop(golden) if revealed else gold
            for k in [k for k in WORKERS if k <= most]:
                first_k = answers[answers["rank"] < k]
                for method in METHODS:
                    start = time.perf_counter()
                    predicted = run(method, first_k, k, revealed)
                    seconds = time.perf_counter() - start
                    yield {
                        "dataset": name,
                        "kind": "boxes",
                        "setting": setting,
                        "workers": k,
                        "method": method,
                        **evaluate(predicted, target),
                        "seconds": round(seconds, 3),
                    }


def replay(folder: Path, targets: Sequence[float] = TARGETS, seed: int = SEED) -> Iterator[dict[str, object]]:
    """Dynamic overlap replayed in a random answer order (module docstring), golden5."""
    answers, gold = load_boxes(folder)
    golden = pick_golden(list(gold.index))
    revealed = {t: gold[t] for t in golden}
    scored = gold.drop(golden)
    rng = np.random.default_rng(seed)
    answers = answers.assign(order=rng.permutation(len(answers))).sort_values(["task", "order"], kind="stable")
    answers["rank"] = answers.groupby("task").cumcount()
    most = int(answers["rank"].max()) + 1
    by_task = {t: list(g["value"]) for t, g in answers.groupby("task", sort=True)}
    settings: list[tuple[str, dict[str, int]]] = [(f"fixed {k}", {t: k for t in by_task}) for k in range(2, most + 1)]
    for target in targets:
        used = {}
        for task, values in by_task.items():
            n = 2
            while n < len(values) and not answers_agree("bbox", values[:n], SPEC, target):
                n += 1
            used[task] = min(n, len(values))
        settings.append((f"dynamic {target}", used))
    for label, used in settings:
        chosen = answers[answers["rank"] < answers["task"].map(used)]
        start = time.perf_counter()
        predicted = fused_boxes(chosen, revealed, habits=True)
        yield {
            "dataset": folder.name,
            "kind": "boxes",
            "setting": "golden5",
            "overlap": label,
            "seed": seed,
            "method": "box_fusion",
            "answers_per_item": round(float(np.mean([used[t] for t in scored.index])), 3),
            **evaluate(predicted, scored),
            "seconds": round(time.perf_counter() - start, 3),
        }


def print_box_table(records: Sequence[dict[str, object]]) -> None:
    """mIoU / F1 per setting, workers (rows) and method (columns)."""
    frame = pd.DataFrame(records)
    if frame.empty:
        return
    for (name, setting), part in frame.groupby(["dataset", "setting"], sort=False):
        print(f"\n{name}, setting: {setting}  (mIoU / precision / recall / F1; seconds in brackets)")
        cells = part.assign(
            cell=[
                f"{r.miou:.3f} / {r.precision:.3f} / {r.recall:.3f} / {r.f1:.3f} ({r.seconds:.1f}s)"
                for r in part.itertuples()
            ]
        )
        table = cells.pivot(index="workers", columns="method", values="cell")
        print(table.reindex(columns=list(dict.fromkeys(part.method))).to_string())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="a box folder, or a folder above box folders")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument("--overlap", action="store_true", help="instead: the dynamic-overlap replay")
    parser.add_argument("--seeds", type=int, default=1, help="replay orders (seeds 0, 1, ...)")
    args = parser.parse_args(argv)
    folders = box_folders(args.data)
    if not folders:
        parser.error(f"no box folder (images.csv, answers.jsonl, gold.jsonl) at or below {args.data}")
    records: list[dict[str, object]] = []
    replays = (r for f in folders.values() for s in range(args.seeds) for r in replay(f, seed=s))
    stream = replays if args.overlap else box_rows(folders)
    for record in stream:
        if args.json or args.overlap:
            print(json.dumps(record), flush=True)
        records.append(record)
    if not args.json and not args.overlap:
        print_box_table(records)


if __name__ == "__main__":
    main()
