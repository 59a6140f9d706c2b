"""Simulated crowds from several generative models, for evaluation that cannot fit its test.

`simulate` (in `synthetic`) draws one kind of crowd: one-coin workers, every worker equally
busy. Real crowds differ from it in ways that decide which aggregation method wins, so the
evaluation draws from several models, each a named scenario:

- `one_coin`: every worker right with its own probability, wrong labels uniform.
- `class_conditional`: a full confusion matrix per worker, with errors the whole crowd shares
  (some classes look alike) and per-class skill.
- `sparse`: thousands of workers with 1 to 5 answers each.
- `heavy_tail_binary`, `heavy_tail_10`: a few busy workers and many who answered 5 to 30
  items (median about 15), binary and ten classes: the shape of the crowds where full
  Dawid-Skene overfits.
- `cheap_and_experts`: many cheap workers a little above chance, three experts who answer a
  third of the items.
- `spammers`: a quarter uniform spammers, some who always give one label, some adversaries.
- `imbalanced`: one class in ten is the rare one, and workers lean to the common class.

Every scenario takes a seed; the same seed gives the same crowd.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
Crowd = tuple[pd.DataFrame, pd.Series]


def one_coin_matrices(accuracy: FloatArray, n_classes: int) -> FloatArray:
    """(workers, observed, true) confusion matrices: right with `accuracy`, errors uniform."""
    k = n_classes
    wrong = (1.0 - accuracy) / max(k - 1, 1)
    matrices = np.repeat(wrong[:, None, None], k, axis=1).repeat(k, axis=2)
    diagonal = np.arange(k)
    matrices[:, diagonal, diagonal] = accuracy[:, None]
    return matrices


def draw(
    confusions: FloatArray,
    activity: FloatArray,
    n_tasks: int,
    overlap: int,
    priors: FloatArray,
    rng: np.random.Generator,
) -> Crowd:
    """Answers and truth: each task gets `overlap` distinct workers, drawn with probability
    proportional to `activity` (Gumbel top-k), each answering from its confusion column."""
    n_workers, k, _ = confusions.shape
    truth = rng.choice(k, size=n_tasks, p=priors / priors.sum())
    keys = np.log(activity)[None, :] + rng.gumbel(size=(n_tasks, n_workers))
    chosen = np.argpartition(-keys, overlap - 1, axis=1)[:, :overlap]
    tasks = np.repeat(np.arange(n_tasks), overlap)
    workers = chosen.ravel()
    columns = confusions[workers, :, truth[tasks]]  # (answers, observed)
    cumulative = columns.cumsum(axis=1)
    labels = (rng.random(len(tasks))[:, None] > cumulative / cumulative[:, -1:]).sum(axis=1)
    labels = np.minimum(labels, k - 1)
    names = np.arange(k).astype(str).astype(object)
    task_names = np.char.add("t", np.arange(n_tasks).astype(str)).astype(object)
    worker_names = np.char.add("w", np.arange(n_workers).astype(str)).astype(object)
    answers = pd.DataFrame({"task": task_names[tasks], "worker": worker_names[workers], "label": names[labels]})
    answered = np.unique(tasks)
    truth_series = pd.Series(names[truth[answered]], index=pd.Index(task_names[answered], name="task"), name="label")
    return answers, truth_series


def _uniform_priors(k: int) -> FloatArray:
    return np.full(k, 1.0 / k)


def one_coin(seed: int) -> Crowd:
    rng = np.random.default_rng(seed)
    k = 3
    acc = rng.uniform(0.45, 0.95, size=60)
    return draw(one_coin_matrices(acc, k), np.ones(60), 1000, 5, _uniform_priors(k), rng)


def class_conditional(seed: int) -> Crowd:
    """Per-worker, per-class skill; errors follow a confusion the crowd shares."""
    rng = np.random.default_rng(seed)
    k, n_workers = 4, 40
    shared = rng.dirichlet(np.full(k, 0.5), size=k).T  # (observed, true)
    class_skill = rng.uniform(0.55, 0.9, size=k)
    confusions = np.empty((n_workers, k, k))
    for w in range(n_workers):
        acc = np.clip(class_skill + rng.normal(0, 0.12, size=k), 0.3, 0.98)
        for c in range(k):
            errors = np.delete(shared[:, c], c) + 1e-3
            errors = rng.dirichlet(20 * errors / errors.sum())
            confusions[w, :, c] = np.insert(errors * (1 - acc[c]), c, acc[c])
    return draw(confusions, np.ones(n_workers), 800, 5, _uniform_priors(k), rng)


def sparse(seed: int) -> Crowd:
    """Workers with 1 to 5 answers each."""
    rng = np.random.default_rng(seed)
    k, n_tasks, overlap = 3, 800, 5
    n_workers = n_tasks * overlap // 3
    acc = rng.uniform(0.45, 0.95, size=n_workers)
    activity = rng.integers(1, 6, size=n_workers).astype(np.float64)
    return draw(one_coin_matrices(acc, k), activity, n_tasks, overlap, _uniform_priors(k), rng)


def _heavy_tail(seed: int, k: int, n_workers: int, n_tasks: int, overlap: int, exponent: float) -> Crowd:
    """Zipf-like activity (median ~15 answers, a few workers with hundreds) and skills that
    vary by class a little, as in real crowds."""
    rng = np.random.default_rng(seed)
    activity = (1.0 / np.arange(1, n_workers + 1) ** exponent).astype(np.float64)
    acc = rng.beta(6, 2.5, size=n_workers)
    base = one_coin_matrices(acc, k)
    tilt = rng.normal(0, 0.06, size=(n_workers, k))
    diagonal = np.arange(k)
    base[:, diagonal, diagonal] = np.clip(base[:, diagonal, diagonal] + tilt, 0.05, 0.99)
    others = 1.0 - base[:, diagonal, diagonal]
    for c in range(k):
        mask = diagonal != c
        base[:, mask, c] = (others[:, c] / max(k - 1, 1))[:, None]
    return draw(base, activity, n_tasks, overlap, _uniform_priors(k), rng)


def heavy_tail_binary(seed: int) -> Crowd:
    return _heavy_tail(seed, 2, 74, 400, 6, 1.1)


def heavy_tail_10(seed: int) -> Crowd:
    return _heavy_tail(seed, 10, 44, 700, 4, 1.5)


def cheap_and_experts(seed: int) -> Crowd:
    rng = np.random.default_rng(seed)
    k, cheap, experts = 3, 120, 3
    acc = np.concatenate([rng.uniform(0.4, 0.6, size=cheap), np.full(experts, 0.95)])
    activity = np.concatenate([np.ones(cheap), np.full(experts, 15.0)])
    return draw(one_coin_matrices(acc, k), activity, 1000, 5, _uniform_priors(k), rng)


def spammers(seed: int) -> Crowd:
    """Honest workers, uniform spammers, one-label spammers and adversaries who pick a
    wrong label on purpose."""
    rng = np.random.default_rng(seed)
    k, n_workers = 3, 50
    honest, uniform, fixed = 30, 12, 5
    adversaries = n_workers - honest - uniform - fixed
    confusions = np.concatenate(
        [
            one_coin_matrices(rng.uniform(0.65, 0.9, size=honest), k),
            one_coin_matrices(np.full(uniform, 1.0 / k), k),
            np.zeros((fixed, k, k)),
            one_coin_matrices(np.full(adversaries, 0.05), k),
        ]
    )
    for i in range(fixed):
        confusions[honest + uniform + i, rng.integers(k), :] = 1.0
    return draw(confusions, np.ones(n_workers), 1000, 7, _uniform_priors(k), rng)


def imbalanced(seed: int) -> Crowd:
    """Priors 0.8 / 0.15 / 0.05; workers miss the rare classes more than the common one."""
    rng = np.random.default_rng(seed)
    k, n_workers = 3, 50
    confusions = np.empty((n_workers, k, k))
    for w in range(n_workers):
        skill = rng.uniform(0.6, 0.95)
        confusions[w, :, 0] = [skill + (1 - skill) * 0.5, (1 - skill) * 0.25, (1 - skill) * 0.25]
        for c in (1, 2):
            miss = rng.uniform(0.1, 0.4)
            column = np.full(k, (1 - skill) * 0.3)
            column[0] = miss
            column[c] = 0.0
            column[c] = max(1.0 - column.sum(), 0.05)
            confusions[w, :, c] = column / column.sum()
    return draw(confusions, np.ones(n_workers), 1500, 5, np.array([0.8, 0.15, 0.05]), rng)


SCENARIOS: dict[str, Callable[[int], Crowd]] = {
    "one_coin": one_coin,
    "class_conditional": class_conditional,
    "sparse": sparse,
    "heavy_tail_binary": heavy_tail_binary,
    "heavy_tail_10": heavy_tail_10,
    "cheap_and_experts": cheap_and_experts,
    "spammers": spammers,
    "imbalanced": imbalanced,
}
