"""Multi-label answers: one binary model per label (binary relevance).

Each label becomes a yes/no question per task ("is `cat` among the labels?") aggregated with
the package's own `aggregate` (method `auto` by default, so golden tasks teach it as they do
for classification); a task's fused set is the labels that came out yes. Crowd-kit's
`BinaryRelevance` does the same but cannot learn from golden tasks, hence ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..api import aggregate
from .result import GeometryResult, empty_result, version_tag
from .scoring import jaccard

METHOD = "binary_relevance"
YES, NO = "1", "0"


def label_sets(values: pd.Series) -> pd.Series:
    """Each answer's labels as a set of strings."""
    return values.map(lambda v: frozenset(str(x) for x in (v.get("labels") or [])))


def aggregate_multilabel(
    frame: pd.DataFrame,
    spec: Mapping[str, Any],
    golden: Mapping[str, Mapping[str, Any]],
    method: str = "auto",
) -> GeometryResult:
    """Fuse multi-label answers (`frame`: task, worker, value with `labels`)."""
    sets = label_sets(frame["value"])
    order: list[str] = [str(x) for x in spec.get("labels") or []]
    seen = sorted({x for s in sets for x in s} | {str(x) for g in golden.values() for x in g.get("labels") or []})
    order += [x for x in seen if x not in order]
    gold_sets = {t: frozenset(str(x) for x in g.get("labels") or []) for t, g in golden.items()}
    real = ~frame["task"].isin(gold_sets)
    tasks = pd.Index(pd.unique(frame.loc[real, "task"]), dtype=object, name="task")
    if not len(tasks):
        return empty_result(f"{METHOD}:{method}")
    chosen = pd.DataFrame(False, index=tasks, columns=pd.Index(order, dtype=object))
    confidence = pd.Series(1.0, index=tasks, dtype=np.float64, name="confidence")
    inner: set[str] = set()
    for label in order:
        said_yes = np.fromiter((label in s for s in sets), dtype=bool, count=len(sets))
        answers = pd.DataFrame({"task": frame["task"], "worker": frame["worker"], "label": np.where(said_yes, YES, NO)})
        gold = pd.Series({t: YES if label in s else NO for t, s in gold_sets.items()}, dtype=object)
        result = aggregate(answers, method, golden=gold if len(gold) else None, labels=[NO, YES])
        inner.add(result.method)
        chosen.loc[result.labels.index, label] = (result.labels == YES).to_numpy()
        confidence.loc[result.confidence.index] = np.minimum(
            confidence.loc[result.confidence.index].to_numpy(), result.confidence.to_numpy()
        )
    fused = {t: [x for x in order if chosen.at[t, x]] for t in tasks}
    values = pd.Series([{"labels": fused[t]} for t in tasks], index=tasks, dtype=object, name="value")
    used = frame.loc[real].groupby("task").size().reindex(tasks).astype(np.int64).rename("answers_used")
    name = f"{METHOD}:{'+'.join(sorted(inner))}"
    return GeometryResult(
        values=values,
        confidence=confidence,
        skills=_skills(frame, sets, fused, gold_sets),
        method=name,
        version=version_tag(name),
        answers_used=used,
    )


def _skills(
    frame: pd.DataFrame, sets: pd.Series, fused: Mapping[str, Sequence[str]], gold: Mapping[str, frozenset[str]]
) -> pd.Series:
    """Per worker the mean Jaccard of its answers against the gold, or the fused set."""
    reference = {**{t: frozenset(v) for t, v in fused.items()}, **gold}
    scores = [jaccard(s, reference[t]) for t, s in zip(frame["task"], sets, strict=True)]
    skills = pd.Series(scores, index=pd.Index(frame["worker"], name="worker"), dtype=np.float64)
    return skills.groupby(level=0, sort=True).mean().rename("skill")
