"""The default method: Dawid-Skene, with golden tasks deciding how it uses them.

Without golden tasks "auto" is plain Dawid-Skene, the strongest single method on every
public data set we benchmark (see README of the data and `python -m aggregation.bench`).
Dawid-Skene estimates K x K confusion numbers per worker; with fewer than
`MIN_ANSWERS_PER_CELL` answers per worker and class it fits noise (two answers can outvote
three with posterior 1.0), so on such thin data the default is majority vote instead.

With golden tasks it starts from Dawid-Skene with the golden tasks clamped to their known
labels and cross-validates that against Dawid-Skene ignoring them (clamping usually helps,
but on some data, e.g. d_product, it pulls confusion matrices the wrong way) on the golden
set alone: each fold's golden tasks are hidden (not clamped) and predicted by a model that
sees the rest clamped. An alternative replaces the default only when it gets at least
`MARGIN` more held-out golden tasks right, because a one-item difference on a few dozen
golden tasks is a coin flip, not evidence. Nothing here looks at anything but the answers
and golden labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import dawid_skene as ds
from .encode import Encoded, FloatArray, IntArray
from .majority_vote import majority_vote

MARGIN = 2
"""Held-out golden tasks an alternative must win by to replace the default."""

MIN_ANSWERS_PER_CELL = 5
"""Mean answers per worker per class below which Dawid-Skene is not the default."""

MAX_FOLDS = 5
MAX_ANSWERS_FOR_SELECTION = 2_000_000
"""Above this, cross-validation costs more than it can win: use the default directly."""

Fitter = Callable[[Encoded], tuple[FloatArray, IntArray]]


def _by_argmax(probas: FloatArray) -> tuple[FloatArray, IntArray]:
    return probas, probas.argmax(axis=1).astype(np.int64)


def _ds_clamped(enc: Encoded) -> tuple[FloatArray, IntArray]:
    return _by_argmax(ds.fit(enc).probas)


def _ds_unclamped(enc: Encoded) -> tuple[FloatArray, IntArray]:
    return _by_argmax(ds.fit(enc.with_gold(enc.gold_t[:0], enc.gold_l[:0])).probas)


@dataclass(frozen=True)
class Candidate:
    name: str
    fit: Fitter
    uses_golden: bool


DS_CLAMPED = Candidate("dawid_skene", _ds_clamped, True)
DS_UNCLAMPED = Candidate("dawid_skene_unclamped", _ds_unclamped, False)
MAJORITY = Candidate("majority_vote", majority_vote, True)


def held_out(enc: Encoded, candidate: Candidate) -> tuple[IntArray, FloatArray]:
    """Choices and posteriors for every golden task while it is hidden from the model."""
    n_gold = len(enc.gold_t)
    if not candidate.uses_golden:
        probas, choice = candidate.fit(enc.with_gold(enc.gold_t[:0], enc.gold_l[:0]))
        return choice[enc.gold_t], probas[enc.gold_t]
    folds = np.arange(n_gold) % min(MAX_FOLDS, n_gold)
    choices = np.empty(n_gold, dtype=np.int64)
    posteriors = np.empty((n_gold, enc.n_labels))
    for fold in np.unique(folds):
        train = folds != fold
        probas, choice = candidate.fit(enc.with_gold(enc.gold_t[train], enc.gold_l[train]))
        choices[~train] = choice[enc.gold_t[~train]]
        posteriors[~train] = probas[enc.gold_t[~train]]
    return choices, posteriors


def candidates(enc: Encoded) -> tuple[Candidate, ...]:
    """The default first. Dawid-Skene with golden clamped, or, when workers answered too
    little to estimate confusion matrices, majority vote; then the alternatives."""
    per_worker = len(enc.t) / max(enc.n_workers, 1)
    if per_worker < MIN_ANSWERS_PER_CELL * enc.n_labels:
        return (MAJORITY, DS_CLAMPED, DS_UNCLAMPED)
    return (DS_CLAMPED, DS_UNCLAMPED)


@dataclass(frozen=True)
class Selection:
    """What auto chose and why: every candidate's held-out golden score."""

    candidate: Candidate
    scores: dict[str, int]


def select(enc: Encoded) -> Selection:
    """The candidate to use and every candidate's held-out golden score."""
    default, *others = candidates(enc)
    if len(enc.gold_t) == 0 or len(enc.t) > MAX_ANSWERS_FOR_SELECTION:
        return Selection(default, {})
    runs = {c.name: held_out(enc, c) for c in (default, *others)}
    scores = {name: int((choice == enc.gold_l).sum()) for name, (choice, _) in runs.items()}
    best = max(others, key=lambda c: scores[c.name])  # max keeps the first on ties
    chosen = best if scores[best.name] - scores[default.name] >= MARGIN else default
    return Selection(chosen, scores)


def auto(enc: Encoded) -> tuple[FloatArray, IntArray, str]:
    """Posteriors, choices and the name of the method used, fitted on all golden tasks."""
    selection = select(enc)
    probas, choice = selection.candidate.fit(enc)
    return probas, choice, selection.candidate.name
