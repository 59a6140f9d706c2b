"""How much workers agree: per task, per job, per worker, and the stop rule of dynamic overlap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from .matching import match
from .scoring import check_kind, jaccard, labelled_similarity, score_answer, threshold
from .shapes import objects_of

DEFAULT_AGREEMENT_TARGET = 0.75
"""Mean pairwise IoU (OKS for keypoints, Jaccard for label sets) above which answers agree."""


def _matched(kind: str, a: Mapping[str, Any], b: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[list[float], int]:
    """Similarities of the matched objects of two answers, and how many objects stayed unmatched."""
    left, right = objects_of(a), objects_of(b)
    sim = labelled_similarity(kind, left, right, spec)
    rows, cols = match(sim, threshold(kind, spec))
    return sim[rows, cols].tolist(), len(left) + len(right) - 2 * len(rows)


def mean_pairwise_similarity(kind: str, values: Sequence[Mapping[str, Any]], spec: Mapping[str, Any]) -> float:
    """Over every pair of answers to one task: the mean IoU (OKS for keypoints) of their
    matched objects; Jaccard of the label sets for multi-label, and for classification the
    share of pairs that agree. NaN with fewer than two answers or no matched object."""
    check_kind(kind)
    if len(values) < 2:
        return float("nan")
    pairs = list(combinations(values, 2))
    if kind == "classification":
        return float(np.mean([str(a.get("label")) == str(b.get("label")) for a, b in pairs]))
    if kind == "multilabel":
        return float(np.mean([jaccard(a.get("labels") or [], b.get("labels") or []) for a, b in pairs]))
    matched = [s for a, b in pairs for s in _matched(kind, a, b, spec)[0]]
    return float(np.mean(matched)) if matched else float("nan")


def answers_agree(
    kind: str, values: Sequence[Mapping[str, Any]], spec: Mapping[str, Any], target: float = DEFAULT_AGREEMENT_TARGET
) -> bool:
    """Do the answers so far agree well enough to stop asking (dynamic overlap)?

    Geometry: at least two answers, every pair matches one-to-one (the same object count, each
    object matched at the spec's threshold with the same label), and the mean similarity of
    the matched objects reaches `target`; answers that all draw nothing agree. Multi-label:
    mean pairwise Jaccard reaches `target`. Classification: every label equal."""
    check_kind(kind)
    if len(values) < 2:
        return False
    if kind == "classification":
        return len({str(v.get("label")) for v in values}) == 1
    if kind == "multilabel":
        return mean_pairwise_similarity(kind, values, spec) >= target
    counts = {len(objects_of(v)) for v in values}
    if len(counts) != 1:
        return False
    if counts == {0}:
        return True
    matched: list[float] = []
    for a, b in combinations(values, 2):
        sims, unmatched = _matched(kind, a, b, spec)
        if unmatched:
            return False
        matched.extend(sims)
    return float(np.mean(matched)) >= target


def job_agreement(kind: str, answers: pd.DataFrame, spec: Mapping[str, Any]) -> float:
    """The job's figure: the mean over tasks of `mean_pairwise_similarity` (answers: task,
    worker, value; tasks where it is undefined are skipped; NaN when none is defined)."""
    per_task = [
        mean_pairwise_similarity(kind, [v for v in group["value"] if v is not None], spec)
        for _, group in answers.groupby(answers["task"].astype(str), sort=True)
    ]
    defined = [x for x in per_task if not np.isnan(x)]
    return float(np.mean(defined)) if defined else float("nan")


def worker_agreement(kind: str, answers: pd.DataFrame, fused: pd.Series, spec: Mapping[str, Any]) -> pd.Series:
    """Per worker the mean score of its answers against the fused value (`score_answer` with
    the fused value as gold), over tasks that have one; sorted by worker."""
    reference = {str(t): v for t, v in fused.items()}
    rows = [
        (str(w), score_answer(kind, v, reference[str(t)], spec))
        for t, w, v in zip(answers["task"], answers["worker"], answers["value"], strict=True)
        if str(t) in reference and v is not None
    ]
    if not rows:
        return pd.Series([], index=pd.Index([], dtype=object, name="worker"), dtype=np.float64, name="agreement")
    frame = pd.DataFrame(rows, columns=["worker", "agreement"])
    return frame.groupby("worker", sort=True)["agreement"].mean()
