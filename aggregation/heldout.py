"""Held-out answers: how well a model fitted without some answers predicts them.

This is the only yardstick a job without golden tasks has: hide a fold of the answers, fit on
the rest, and score each hidden answer by the probability the model gave it (the task's
posterior from the other answers, through the worker's confusion matrix). A model that
overfits a worker's few answers predicts that worker's next answer badly, so the score
punishes too many parameters without needing the truth.

Each model is scored at its best temperature (posteriors raised to 1/T): raw Dawid-Skene
posteriors are overconfident, and a score that punished that would pick models for their
calibration, which `calibration` fixes anyway, rather than for their ranking of labels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import dawid_skene as ds
from .encode import Encoded, FloatArray, IntArray

FOLDS = 5
MIN_SCORED = 10_000
"""Folds are scored (each a fit without it) until at least this many hidden answers are, so
large jobs fit each candidate once or twice rather than five times."""
SEED = 0
TEMPERATURES = np.exp(np.linspace(-0.5, 3.5, 17))
"""Temperatures tried, 0.6 to 33: from a little sharper to much softer than the model."""


def answer_folds(n_answers: int, folds: int = FOLDS, seed: int = SEED) -> IntArray:
    """A fold number per answer, balanced and fixed by the seed (answers are in canonical
    order, so the split does not depend on the input's row order)."""
    return (np.random.default_rng(seed).permutation(n_answers) % folds).astype(np.int64)


def keep_answers(enc: Encoded, mask: np.ndarray) -> Encoded:
    """The same tasks, workers and golden tasks with only the answers under `mask`."""
    return replace(enc, t=enc.t[mask], w=enc.w[mask], l=enc.l[mask])


def temper(probas: FloatArray, temperature: float) -> FloatArray:
    """Posteriors raised to 1/temperature and renormalised (T > 1 softens them)."""
    if temperature == 1.0:
        return probas
    logp = np.log(np.maximum(probas, 1e-300)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return np.asarray(out / out.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Prediction:
    """For every answer, predicted while hidden: its task's posterior from the other folds,
    and its worker's probability of that answer given each true label."""

    posterior: FloatArray  # (answers, labels)
    likelihood: FloatArray  # (answers, labels)

    def loglik(self, temperature: float = 1.0) -> float:
        """Mean log probability of the hidden answers."""
        p = (temper(self.posterior, temperature) * self.likelihood).sum(axis=1)
        return float(np.log(np.maximum(p, 1e-300)).mean())

    def best(self) -> tuple[float, float]:
        """The best mean log probability over `TEMPERATURES`, and its temperature."""
        scores = [self.loglik(t) for t in TEMPERATURES]
        i = int(np.argmax(scores))
        return scores[i], float(TEMPERATURES[i])


def scored_folds(folds: IntArray, min_scored: int = MIN_SCORED) -> list[int]:
    """The first folds whose answers add up to `min_scored` (all of them for small jobs)."""
    sizes = np.bincount(folds)
    enough = int(np.searchsorted(np.cumsum(sizes), min_scored)) + 1
    return list(range(min(enough, len(sizes))))


def predict_hidden(enc: Encoded, prior: ds.Shrinkage, folds: IntArray) -> Prediction:
    """For each scored fold, fit without it and predict its answers."""
    k = enc.n_labels
    scored = np.isin(folds, scored_folds(folds))
    posterior = np.empty((int(scored.sum()), k))
    likelihood = np.empty((int(scored.sum()), k))
    position = np.cumsum(scored) - 1
    for fold in scored_folds(folds):
        hidden = folds == fold
        model = ds.fit(keep_answers(enc, ~hidden), prior=prior)
        rows = position[hidden]
        posterior[rows] = model.probas[enc.t[hidden]]
        likelihood[rows] = model.errors[enc.w[hidden], enc.l[hidden], :]
    return Prediction(posterior, likelihood)
