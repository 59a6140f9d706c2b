"""Majority vote with a tie rule that does not depend on pandas internals.

crowd-kit's MajorityVote breaks ties by the first column of an unstacked frame, which changes
with pandas versions. Ours: most votes; then the highest summed golden skill of the voters
(smoothed golden accuracy, so workers with no golden answers count 0.5 each); then the
label that comes first in the job's label order. The confidence is the vote share.
"""

from __future__ import annotations

import numpy as np

from .encode import Encoded, FloatArray, IntArray, vote_counts


def agreement(enc: Encoded, target: IntArray, prior_correct: float = 0.0, prior_wrong: float = 0.0) -> FloatArray:
    """Per worker code, the smoothed share of its answers equal to `target` (a label code per
    task; -1 where unknown, which does not count)."""
    answer_target = target[enc.t]
    seen = np.bincount(enc.w, weights=(answer_target >= 0).astype(np.float64), minlength=enc.n_workers)
    hit = np.bincount(enc.w, weights=(answer_target == enc.l).astype(np.float64), minlength=enc.n_workers)
    return (hit + prior_correct) / np.maximum(seen + prior_correct + prior_wrong, 1.0)


def worker_golden_skill(enc: Encoded, prior_correct: float = 1.0, prior_wrong: float = 1.0) -> FloatArray:
    """Smoothed golden accuracy per worker code (the same formula as `golden_scores`)."""
    truth = np.full(enc.n_tasks, -1, dtype=np.int64)
    truth[enc.gold_t] = enc.gold_l
    return agreement(enc, truth, prior_correct, prior_wrong)


def pick(votes: FloatArray, tie_break: FloatArray) -> IntArray:
    """Per row: the column with most votes, then the largest tie_break, then the first."""
    top = votes == votes.max(axis=1, keepdims=True)
    second = np.where(top, tie_break, -np.inf)
    return (second == second.max(axis=1, keepdims=True)).argmax(axis=1).astype(np.int64)


def majority_vote(enc: Encoded) -> tuple[FloatArray, IntArray]:
    """Vote shares (the confidence) and the chosen label code per task."""
    votes = vote_counts(enc)
    skill = worker_golden_skill(enc)
    tie_break = vote_counts(enc, weights=skill[enc.w])
    shares = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1.0)
    return shares, pick(votes, tie_break)


def weighted_vote(enc: Encoded) -> tuple[FloatArray, IntArray]:
    """Wawa: votes weighted by each worker's agreement with the majority vote (with the known
    label on golden tasks), and the label with most weight. Returns the weighted votes."""
    _, target = majority_vote(enc)
    target[enc.gold_t] = enc.gold_l
    votes = vote_counts(enc, weights=agreement(enc, target)[enc.w])
    return votes, pick(votes, vote_counts(enc))
