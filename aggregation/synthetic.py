"""Simulated crowds with known truth, for tests, demos and scale runs.

Each worker answers right with its own accuracy and otherwise picks a wrong class uniformly;
spammers answer uniformly at random. Every item gets `overlap` distinct workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _accuracies(
    workers: int | Sequence[float], n_classes: int, spammers: float, rng: np.random.Generator
) -> np.ndarray:
    """Per-worker accuracy; a share `spammers` of them is set to chance level."""
    if isinstance(workers, int):
        acc = rng.uniform(0.6, 0.95, size=workers)
    else:
        acc = np.asarray(workers, dtype=np.float64).copy()
    n_spam = int(round(spammers * len(acc)))
    if n_spam:
        acc[rng.choice(len(acc), size=n_spam, replace=False)] = 1.0 / n_classes
    return acc


def simulate(
    n_items: int,
    n_workers_or_accuracies: int | Sequence[float],
    n_classes: int,
    overlap: int,
    seed: int = 0,
    spammers: float = 0.0,
) -> tuple[pd.DataFrame, pd.Series]:
    """Answers (task, worker, label as strings "t0", "w0", "0") and the true label per task."""
    rng = np.random.default_rng(seed)
    acc = _accuracies(n_workers_or_accuracies, n_classes, spammers, rng)
    n_workers = len(acc)
    if overlap > n_workers:
        raise ValueError("overlap cannot exceed the number of workers")
    truth = rng.integers(0, n_classes, size=n_items)
    # Sorted draws plus 0..overlap-1 are distinct: overlap different workers per item.
    draws = np.sort(rng.integers(0, n_workers - overlap + 1, size=(n_items, overlap)), axis=1)
    workers = (draws + np.arange(overlap)).ravel()
    items = np.repeat(np.arange(n_items), overlap)
    right = rng.random(len(items)) < acc[workers]
    shift = rng.integers(1, max(n_classes, 2), size=len(items))
    labels = np.where(right, truth[items], (truth[items] + shift) % n_classes)
    task_names = np.char.add("t", np.arange(n_items).astype(str)).astype(object)
    worker_names = np.char.add("w", np.arange(n_workers).astype(str)).astype(object)
    class_names = np.arange(n_classes).astype(str).astype(object)
    answers = pd.DataFrame({"task": task_names[items], "worker": worker_names[workers], "label": class_names[labels]})
    truth_series = pd.Series(class_names[truth], index=pd.Index(task_names, name="task"))
    return answers, truth_series.rename("label")
