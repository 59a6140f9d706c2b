"""`aggregate`: answers in, one aggregate per real task out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import dawid_skene as ds
from .auto import DEFAULT, Settings, auto
from .crowdkit_methods import crowdkit_probas
from .encode import Encoded, FloatArray, IntArray, check_answers, encode
from .majority_vote import majority_vote
from .result import METHODS, AggregationResult, build_result, empty_result


def _run(enc: Encoded, method: str, settings: Settings) -> tuple[FloatArray, IntArray | None, str]:
    """Posteriors, optional explicit choices, and the method name to record."""
    if enc.n_labels == 1:
        # One class: nothing to infer, and several methods divide by (classes - 1).
        probas = np.ones((enc.n_tasks, 1))
        return probas, None, "auto:single_label" if method == "auto" else method
    if method == "auto":
        probas, choice, used = auto(enc, settings)
        return probas, choice, f"auto:{used}"
    if method == "majority_vote":
        probas, choice = majority_vote(enc)
        return probas, choice, method
    if method in ("dawid_skene", "one_coin_dawid_skene"):
        model = ds.fit(enc, one_coin=method == "one_coin_dawid_skene")
        return model.probas, None, method
    return crowdkit_probas(enc, method), None, method


def aggregate(
    answers: pd.DataFrame,
    method: str = "auto",
    golden: pd.Series | None = None,
    labels: Sequence[str] | None = None,
    auto_settings: Settings = DEFAULT,
    known_workers: pd.DataFrame | None = None,
) -> AggregationResult:
    """Aggregate `answers` (columns task, worker, label; all read as strings).

    `golden` maps golden task -> known label. Golden tasks teach the model (Dawid-Skene and
    one-coin Dawid-Skene clamp them to their known label; majority vote uses golden accuracy
    to break ties; the other crowd-kit methods see golden answers as ordinary answers) and
    are never part of the result. `labels` is the job's label set in its preferred order:
    exact ties go to the label listed first (labels nobody chose are allowed; labels not
    listed are appended in sorted order). The result covers every non-golden task with at
    least one answer; an empty frame gives an empty result. `auto_settings` changes the
    knobs of "auto" (for benchmarks; the marketplace runs the defaults). `known_workers`
    (index worker; columns `accuracy`, on this job's labels, and `answers`, how many of this
    job's answers that knowledge is worth) is a prior on each worker's skill from earlier jobs;
    only "auto" reads it.
    """
    if method not in METHODS:
        raise ValueError(f"unknown aggregation method {method!r}; expected one of {METHODS}")
    frame = check_answers(answers)
    gold = None if golden is None or len(golden) == 0 else golden
    golden_tasks = None if gold is None else pd.Index(gold.index.astype(str))
    if golden_tasks is not None:
        frame_real = ~frame["task"].isin(golden_tasks)
        if not frame_real.any():
            return empty_result(method)
    if frame.empty:
        return empty_result(method)
    enc = encode(frame, gold, labels, known_workers if method == "auto" else None)
    probas, choice, used = _run(enc, method, auto_settings)
    return build_result(enc, probas, used, golden_tasks, choice)
