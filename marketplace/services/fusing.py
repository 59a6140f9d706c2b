"""Aggregate an annotation job (label sets, boxes, polygons, keypoints) with `aggregation.geometry`.

The answers' values are read with COPY; golden items teach the workers' skills and are left out
of the results; each item's image size clips fused geometry. A result row carries the fused
value (`{"objects": [...]}`, each object with its `score` (support) and `n` (workers in its
cluster), or `{"labels": [...]}`), an empty list when the workers agree there is nothing, and
the item's confidence.

Worker quality: golden figures from the stored golden scores (`services/scoring.py`), the
agreement as each worker's mean score against the fused values. The job's agreement figure is
the mean pairwise IoU (OKS for keypoints) of matched objects, or for label sets Krippendorff's
alpha with the Jaccard distance beside their mean pairwise Jaccard; both are taken on the first
`MAX_AGREEMENT_TASKS` items (by id).

Dynamic overlap: an item stops at the minimum when its first answers agree
(`aggregation.geometry.answers_agree`: the same object count, every object matched, mean IoU of
the matches at least the job's `target_confidence`); otherwise it gets one more answer, up to
`overlap_max`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import case, delete, func, select
from sqlmodel import Session

from aggregation import geometry
from aggregation.alpha import label_alpha
from marketplace.models import Aggregate, Answer, Item, Job, utcnow
from marketplace.services import scoring
from marketplace.services.bulk import copy_rows, copy_values, replace_quality
from marketplace.services.dynamic_overlap import extend_tasks
from marketplace.services.quality import golden_credit, golden_scored
from marketplace.settings import MULTILABEL

MAX_AGREEMENT_TASKS = 5000


@dataclass(frozen=True)
class Run:
    """What one aggregation of a job produced, to record (`AggregationRun`)."""

    method: str
    version: str
    answers_used: int
    last_answer_id: int
    items: int
    agreement: dict[str, Any]
    extended: int


def fuse_job(session: Session, job: Job) -> Run:
    """Fuse the job's answers; store aggregates and worker quality, ask for more answers where
    the first ones disagree. Leaves the transaction open for the caller's run record."""
    kind, spec = job.annotation["type"], job.annotation
    scoring.score_pending(session, job.id)
    answers, last_id = copy_values(session, job.id)
    golden, sizes = _golden_and_sizes(session, job.id)
    session.commit()  # no transaction open while the answers are fused
    result = geometry.aggregate_objects(kind, answers, spec, golden=golden, sizes=sizes)
    real = answers[~answers["task"].isin(golden.index)]
    rows = pd.DataFrame(
        {
            "job_id": job.id,
            "item_id": result.values.index.astype(np.int64),
            "value": [json.dumps(v, separators=(",", ":")) for v in result.values],
            "confidence": result.confidence.astype(float).to_numpy(),
            "method": result.method,
            "version": result.version,
            "answers": result.answers_used.astype(np.int64).to_numpy(),
            "updated_at": utcnow(),
        }
    )
    session.execute(delete(Aggregate).where(Aggregate.job_id == job.id))
    copy_rows(session, Aggregate.__tablename__, list(rows.columns), rows)
    _store_quality(session, job.id, answers, geometry.worker_agreement(kind, real, result.values, spec))
    extended = _extend_disagreeing(session, job, real, result.answers_used)
    return Run(result.method, result.version, len(answers), last_id, len(rows), _agreement(kind, real, spec), extended)


def _golden_and_sizes(session: Session, job_id: int) -> tuple[pd.Series, pd.DataFrame]:
    """Golden values by item id (as strings), and every item's image size (width, height)."""
    rows = session.execute(
        select(
            Item.id,
            Item.gold,
            Item.data["width"].as_float().label("width"),
            Item.data["height"].as_float().label("height"),
        ).where(Item.job_id == job_id)
    ).all()
    golden = pd.Series({str(r.id): r.gold for r in rows if r.gold is not None}, dtype=object)
    sizes = pd.DataFrame(
        {"width": [r.width for r in rows], "height": [r.height for r in rows]},
        index=pd.Index([str(r.id) for r in rows], dtype=object, name="task"),
    )
    return golden, sizes


def _store_quality(session: Session, job_id: int, answers: pd.DataFrame, agreement: pd.Series) -> None:
    """Per worker: answers, golden figures from the stored scores, agreement with the fused values."""
    golden = session.execute(
        select(
            Answer.worker_id,
            func.count(),
            func.sum(case((Answer.correct.is_(True), 1), else_=0)),
            func.sum(golden_credit()),
        )
        .where(Answer.job_id == job_id, golden_scored(), Answer.excluded.is_(False))
        .group_by(Answer.worker_id)
    ).all()
    frame = pd.DataFrame({"answers": answers.groupby("worker").size()})
    frame.index = frame.index.astype(np.int64)
    figures = (
        pd.DataFrame(
            [(int(w), int(seen), int(right or 0), float(credit or 0.0)) for w, seen, right, credit in golden],
            columns=["worker_id", "golden_seen", "golden_correct", "golden_score"],
        )
        .astype({"worker_id": np.int64, "golden_seen": float, "golden_correct": float, "golden_score": float})
        .set_index("worker_id")
    )
    frame = frame.join(figures)
    frame[["golden_seen", "golden_correct"]] = frame[["golden_seen", "golden_correct"]].fillna(0).astype(np.int64)
    seen = frame["golden_seen"]
    frame["golden_score"] = frame["golden_score"].where(seen > 0)
    frame["golden_accuracy"] = ((frame["golden_score"] + 1) / (seen + 2)).where(seen > 0)  # as for labels
    frame["agreement"] = agreement.set_axis(agreement.index.astype(np.int64)).reindex(frame.index).round(4)
    replace_quality(session, job_id, frame)


def _first_tasks(answers: pd.DataFrame) -> pd.DataFrame:
    """The answers of the first `MAX_AGREEMENT_TASKS` items by id (a bounded, repeatable sample)."""
    tasks = sorted(pd.unique(answers["task"]), key=int)[:MAX_AGREEMENT_TASKS]
    return answers[answers["task"].isin(tasks)]


def _agreement(kind: str, real: pd.DataFrame, spec: dict[str, Any]) -> dict[str, Any]:
    """The job's agreement figures on its real items."""
    sample = _first_tasks(real)
    pairwise = geometry.job_agreement(kind, sample, spec) if len(sample) else float("nan")
    mean = None if np.isnan(pairwise) else round(float(pairwise), 4)
    if kind == MULTILABEL:
        sets = sample["value"].map(lambda v: frozenset(v["labels"]))
        labelled = pd.DataFrame({"task": sample["task"], "worker": sample["worker"], "label": sets})
        return {"krippendorff_alpha": label_alpha(labelled), "mean_pairwise_jaccard": mean}
    return {"mean_pairwise_oks" if kind == "keypoints" else "mean_pairwise_iou": mean}


def _extend_disagreeing(session: Session, job: Job, real: pd.DataFrame, answers_used: pd.Series) -> int:
    """One more answer for each real item whose answers do not agree yet (dynamic overlap)."""
    if not job.overlap_max or job.target_confidence is None or real.empty:
        return 0
    kind, spec, target = job.annotation["type"], job.annotation, float(job.target_confidence)
    unsure = [
        int(task)
        for task, group in real.groupby("task", sort=True)
        if int(answers_used.get(task, 0)) < job.overlap_max
        and not geometry.answers_agree(kind, list(group["value"]), spec, target)
    ]
    return extend_tasks(session, job, unsure)
