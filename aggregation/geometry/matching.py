"""One-to-one matching of two sets of objects by the Hungarian method on a similarity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .shapes import FloatArray, IntArray


def same_label(a: Sequence[str], b: Sequence[str]) -> FloatArray:
    """1.0 where the labels are equal, else 0.0 (a label mismatch forbids a match)."""
    return (np.asarray(a, dtype=object)[:, None] == np.asarray(b, dtype=object)[None, :]).astype(np.float64)


def match(similarity: FloatArray, threshold: float) -> tuple[IntArray, IntArray]:
    """Rows and columns of the matched pairs: the assignment with the largest total
    similarity among pairs at or above `threshold` (pairs below it can never match, so
    they do not pull the assignment either)."""
    if similarity.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    allowed = np.where(similarity >= threshold, similarity, 0.0)
    rows, cols = linear_sum_assignment(allowed, maximize=True)
    keep = similarity[rows, cols] >= threshold
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def f1_times_mean(similarity: FloatArray, threshold: float) -> float:
    """The score of an answer (rows) against the gold (columns): F1 of the matched pairs
    times their mean similarity; 1.0 when both sides are empty, 0.0 when only one is."""
    n_answer, n_gold = similarity.shape
    if n_answer == 0 and n_gold == 0:
        return 1.0
    if n_answer == 0 or n_gold == 0:
        return 0.0
    rows, cols = match(similarity, threshold)
    if not len(rows):
        return 0.0
    f1 = 2.0 * len(rows) / (n_answer + n_gold)
    return float(f1 * similarity[rows, cols].mean())
