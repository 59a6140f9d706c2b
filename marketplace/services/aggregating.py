"""Aggregate a job: read its answers in bulk, run `aggregation`, store results and quality.

Answers are read and results written with COPY (`bulk.py`). Results are replaced for the job in
one transaction, so a reader sees either the old or the new run. Classification answers go to
`aggregation.aggregate` here; every other annotation type to `aggregation.geometry`
(`fusing.py`). Each run records how much the workers agreed (`AggregationRun.agreement`):
Krippendorff's alpha for labels (`aggregation.alpha`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select
from sqlmodel import Session

import aggregation
from aggregation.alpha import label_alpha
from marketplace.models import Aggregate, AggregationRun, Answer, Item, Job, JobState, utcnow
from marketplace.services import fusing
from marketplace.services.bulk import copy_answers, copy_rows, replace_quality
from marketplace.services.dynamic_overlap import extend_unsure
from marketplace.services.fusing import Run
from marketplace.services.skills import known_workers
from marketplace.settings import CLASSIFICATION


def load_golden(session: Session, job_id: int) -> pd.Series:
    rows = session.execute(select(Item.id, Item.answer).where(Item.job_id == job_id, Item.is_golden.is_(True))).all()
    return pd.Series({str(r.id): str(r.answer) for r in rows}, dtype=object)


@dataclass(frozen=True)
class Pace:
    """How soon new answers are worth a refit. Each refit reads and fits the whole job, so one
    every `AGGREGATE_EVERY_ANSWERS` costs the square of the job's size over its life; waiting
    until the new answers reach `share` of those the last run used makes it a constant per
    answer (a run per 2% of growth). Below 10,000 answers (with the defaults) the batch is the
    smaller, so small jobs are aggregated as before; a job whose new answers stay short of the
    share is aggregated once its last run is `max_wait_seconds` old (the sweep looks every
    `SWEEP_SECONDS`), and a finished job or one whose answers were left out (a ban) at once."""

    share: float = 0.02
    max_wait_seconds: float = 30.0

    @classmethod
    def from_config(cls, config: Any) -> Pace:
        return cls(float(config["AGGREGATE_SHARE"]), float(config["AGGREGATE_MAX_WAIT_SECONDS"]))


def aggregate_job(session: Session, job_id: int, pace: Pace | None = None) -> dict[str, Any]:
    """Recompute the job's aggregates and worker quality from its current answers.

    Skipped when nothing changed since the last run (same included answers, same method):
    the result would be the same (aggregation is deterministic), and, with a `pace`, while the
    new answers are too few for a refit (`waiting` in the summary). Otherwise the whole job is
    refitted: Dawid-Skene and its kin are global models, where one new answer moves a
    worker's error matrix and so every item that worker touched; 10M answers refit in ~20 s.
    """
    started = time.perf_counter()
    job = session.get(Job, job_id)
    if job is None:
        return {"job_id": job_id, "skipped": "no such job"}
    previous = last_run(session, job_id)
    answers = _answers_since(session, job_id, previous)
    if _unchanged(job, previous, answers):
        session.commit()
        return {"job_id": job_id, "skipped": "no change since the last run"}
    if pace is not None and _too_soon(job, previous, answers, pace):
        session.commit()
        return {"job_id": job_id, "skipped": "waiting for more answers", "waiting": True}
    labels = job.annotation["type"] == CLASSIFICATION
    run = _aggregate_labels(session, job) if labels else fusing.fuse_job(session, job)
    seconds = time.perf_counter() - started
    session.add(
        AggregationRun(
            job_id=job_id,
            method=run.method,
            version=run.version,
            answers_used=run.answers_used,
            last_answer_id=run.last_answer_id,
            items=run.items,
            seconds=round(seconds, 4),
            agreement=run.agreement,
        )
    )
    session.commit()
    return {
        "job_id": job_id,
        "items": run.items,
        "answers": run.answers_used,
        "method": run.method,
        "seconds": round(seconds, 3),
        "answers_added": run.extended,
    }


def _aggregate_labels(session: Session, job: Job) -> Run:
    """A classification: aggregates, worker quality and dynamic overlap from the labels."""
    job_id = job.id
    answers, last_id = copy_answers(session, job_id)
    golden = load_golden(session, job_id)
    method, labels = job.aggregation, job.annotation["labels"]
    known = known_workers(session, job)
    session.commit()  # no transaction open while the model fits
    result = aggregation.aggregate(answers, method=method, golden=golden, labels=labels, known_workers=known)
    real = result.labels.index[~result.labels.index.isin(golden.index)]
    rows = pd.DataFrame(
        {
            "job_id": job_id,
            "item_id": real.astype(np.int64),
            "label": result.labels[real].astype(str).to_numpy(),
            "confidence": result.confidence[real].astype(float).to_numpy(),
            "method": result.method,
            "version": result.version,
            "answers": result.answers_used[real].astype(np.int64).to_numpy(),
            "updated_at": utcnow(),
        }
    )
    session.execute(delete(Aggregate).where(Aggregate.job_id == job_id))
    copy_rows(session, Aggregate.__tablename__, list(rows.columns), rows)
    _store_quality(session, job_id, answers, golden, result.labels[real])
    extended = extend_unsure(session, job, result.confidence[real], result.answers_used[real])
    on_real = answers[~answers["task"].isin(golden.index)]
    agreement = {"krippendorff_alpha": label_alpha(on_real)}
    return Run(result.method, result.version, len(answers), last_id, len(rows), agreement, extended)


@dataclass(frozen=True)
class _Answers:
    latest: int  # the newest included answer's id (0: none)
    included: int  # included answers
    new: int  # ... after the last run's `last_answer_id` (all of them without a run)


def _answers_since(session: Session, job_id: int, run: AggregationRun | None) -> _Answers:
    """The job's included answers against the last run, in one read."""
    after = run.last_answer_id if run is not None else 0
    latest, included, new = session.execute(
        select(func.coalesce(func.max(Answer.id), 0), func.count(), func.count().filter(Answer.id > after)).where(
            Answer.job_id == job_id, Answer.excluded.is_(False)
        )
    ).one()
    return _Answers(int(latest), int(included), int(new))


def _unchanged(job: Job, run: AggregationRun | None, answers: _Answers) -> bool:
    if run is None:
        return False
    if job.annotation["type"] == CLASSIFICATION and run.method.split(":")[0] != job.aggregation:
        return False  # annotation types have one method each
    return answers.latest == run.last_answer_id and answers.included == run.answers_used


def _too_soon(job: Job, run: AggregationRun | None, answers: _Answers, pace: Pace) -> bool:
    """Too few new answers since the last run for a refit, and that run is recent."""
    if run is None or job.state in (JobState.COMPLETED, JobState.CANCELLED):
        return False
    if answers.included != run.answers_used + answers.new:
        return False  # answers left out (a ban) or put back: the results must follow now
    recent = (utcnow() - run.created_at).total_seconds() < pace.max_wait_seconds
    return answers.new < pace.share * run.answers_used and recent


def _store_quality(session: Session, job_id: int, answers: pd.DataFrame, golden: pd.Series, labels: pd.Series) -> None:
    scores = aggregation.golden_scores(answers, golden)
    counts = answers.groupby("worker").size()
    frame = pd.DataFrame({"answers": counts}).join(scores[["golden_seen", "golden_correct", "golden_accuracy"]])
    frame["agreement"] = aggregation.agreement(answers, labels)
    frame[["golden_seen", "golden_correct"]] = frame[["golden_seen", "golden_correct"]].fillna(0).astype(np.int64)
    frame["golden_score"] = frame["golden_correct"].astype(float)
    frame.loc[frame["golden_seen"] == 0, "golden_accuracy"] = np.nan
    replace_quality(session, job_id, frame.astype({"golden_accuracy": float, "agreement": float}))


def last_run(session: Session, job_id: int) -> AggregationRun | None:
    return session.execute(
        select(AggregationRun).where(AggregationRun.job_id == job_id).order_by(AggregationRun.id.desc()).limit(1)
    ).scalar_one_or_none()


def latest_answer_id(session: Session, job_id: int) -> int:
    """The newest answer an aggregation would read (excluded ones it leaves out: comparing with a
    run's `last_answer_id` must not count them, or a job whose newest answer was excluded would
    look due for ever)."""
    return int(
        session.execute(
            select(func.coalesce(func.max(Answer.id), 0)).where(Answer.job_id == job_id, Answer.excluded.is_(False))
        ).scalar_one()
    )
