"""Small named annotation answers with known right answers, and a synthetic crowd of boxes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def boxes(*xywh: tuple[float, float, float, float], label: str = "person") -> dict[str, Any]:
    """An answer (or gold value) of boxes with one label."""
    return {"objects": [{"label": label, "bbox": list(b)} for b in xywh]}


def answers(rows: list[tuple[str, str, Any]]) -> pd.DataFrame:
    """Rows of (task, worker, value) as an answers frame."""
    return pd.DataFrame(rows, columns=["task", "worker", "value"])


# Two gold boxes side by side and two answer boxes: the best single pair (A1, G1: IoU 9/11)
# leaves A2 with nothing, while the Hungarian method matches both pairs at IoU 2/3 each.
HUNGARIAN_GOLD = boxes((0, 0, 10, 10), (3, 0, 10, 10))
HUNGARIAN_ANSWER = boxes((1, 0, 10, 10), (-2, 0, 10, 10))

SQUARE = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]
LEFT_HALF = [[0.0, 0.0], [5.0, 0.0], [5.0, 10.0], [0.0, 10.0]]
BOW_TIE = [[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]]  # self-intersecting
# An L shape: concave, 8 vertices, area 75.
L_SHAPE = [[0.0, 0.0], [10.0, 0.0], [10.0, 5.0], [5.0, 5.0], [5.0, 10.0], [0.0, 10.0], [0.0, 7.0], [0.0, 3.0]]

# Three answers to one task, all empty: nothing to draw, agreed.
ALL_EMPTY = answers([("t1", "a", boxes()), ("t1", "b", boxes()), ("t1", "c", boxes())])


def synthetic_boxes(
    n_images: int = 40,
    seed: int = 0,
    good: int = 4,
    noise: float = 0.03,
    spammer: bool = True,
    habit: float = 0.0,
    habit_workers: int = 1,
) -> tuple[pd.DataFrame, pd.Series]:
    """A crowd drawing 1-3 people per 640x480 image: `good` workers with Gaussian noise of
    `noise` x the box's size on every edge, `habit_workers` workers ("habit0", ...; when
    `habit` is set) as precise who draw every right edge `habit` x the width too far right,
    and one spammer drawing 1-3 random boxes. Returns the answers and the true boxes by task."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, Any]] = []
    truth: dict[str, Any] = {}
    for i in range(n_images):
        task = f"img{i:03d}"
        n = int(rng.integers(1, 4))
        x0 = np.sort(rng.choice(np.arange(0, 6), size=n, replace=False)) * 100 + rng.uniform(0, 20, n)
        true = np.c_[x0, rng.uniform(50, 200, n), rng.uniform(40, 80, n), rng.uniform(100, 250, n)]
        truth[task] = boxes(*[tuple(b) for b in true.round(2)])
        workers = [f"good{j}" for j in range(good)] + ([f"habit{j}" for j in range(habit_workers)] if habit else [])
        for worker in workers:
            drawn = true.copy()
            drawn[:, [0, 2]] += rng.normal(0, noise, (n, 2)) * true[:, [2]]
            drawn[:, [1, 3]] += rng.normal(0, noise, (n, 2)) * true[:, [3]]
            if worker.startswith("habit"):
                drawn[:, 2] += habit * true[:, 2]
            rows.append((task, worker, boxes(*[tuple(b) for b in drawn.round(2)])))
        if spammer:
            m = int(rng.integers(1, 4))
            corner, size = rng.uniform(0, [500, 300], (m, 2)), rng.uniform(10, [100, 150], (m, 2))
            junk = np.c_[corner, size]
            rows.append((task, "spammer", boxes(*[tuple(b) for b in junk.round(2)])))
    return answers(rows), pd.Series(truth, dtype=object)
