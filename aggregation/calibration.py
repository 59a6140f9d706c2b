"""Confidences that mean what they say: temperature scaling and its yardstick.

Dawid-Skene treats every answer as independent evidence, so a task with 39 answers gets a
posterior of 1 - 1e-12 even where workers err together; dynamic overlap and acceptance read
these numbers. A temperature T > 1 softens every posterior (p ** (1/T), renormalised) without
changing which label wins. T is fitted on golden tasks, each predicted while hidden
(cross-fitted), by maximum a posteriori: a log-normal prior centred on the temperature that
held-out answers preferred keeps a handful of golden tasks from swinging it.
"""

from __future__ import annotations

import numpy as np

from .encode import FloatArray, IntArray
from .heldout import temper

PRIOR_SD = 0.5
"""Standard deviation of log T around the unsupervised temperature: a factor of 1.65."""

LOG_GRID = np.linspace(-3.0, 4.5, 151)
"""log T from -3 (T = 0.05) to 4.5 (T = 90), in steps of 0.05. Temperatures below 1 sharpen:
majority vote's smoothed shares need them."""


def fit_temperature(
    posteriors: FloatArray, truth: IntArray, prior_temperature: float = 1.0, prior_sd: float = PRIOR_SD
) -> float:
    """The MAP temperature for held-out golden `posteriors` whose true labels are `truth`."""
    if len(truth) == 0:
        return prior_temperature
    centre = np.log(prior_temperature)
    rows = np.arange(len(truth))
    best, best_t = -np.inf, prior_temperature
    for log_t in LOG_GRID:
        t = float(np.exp(log_t))
        loglik = np.log(np.maximum(temper(posteriors, t)[rows, truth], 1e-300)).sum()
        score = loglik - 0.5 * ((log_t - centre) / prior_sd) ** 2
        if score > best:
            best, best_t = score, t
    return best_t


def expected_calibration_error(confidence: FloatArray, hit: FloatArray, bins: int = 10) -> float:
    """|accuracy - mean confidence| per equal-width confidence bin, weighted by the bin's share."""
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += abs(float(hit[inside].mean()) - float(confidence[inside].mean())) * float(inside.mean())
    return total
