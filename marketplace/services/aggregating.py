"""Aggregate a job: read its answers in bulk, run `aggregation`, store results and quality.

Reads are plain column tuples streamed from the database (no ORM objects), and results are
replaced for the job in one transaction, so a reader sees either the old or the new run.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from sqlalchemy import delete, func, insert, select
from sqlmodel import Session

import aggregation
from marketplace.models import Aggregate, AggregationRun, Answer, Item, Job, WorkerQuality, utcnow
from marketplace.services.dynamic_overlap import extend_unsure


def load_answers(session: Session, job_id: int) -> tuple[pd.DataFrame, int]:
    """All included answers of a job as a (task, worker, label) frame, and the last answer id."""
    rows = session.execute(
        select(Answer.id, Answer.item_id, Answer.worker_id, Answer.label)
        .where(Answer.job_id == job_id, Answer.excluded.is_(False))
        .order_by(Answer.id)
        .execution_options(yield_per=50_000)
    ).tuples()
    frame = pd.DataFrame.from_records(list(rows), columns=["id", "task", "worker", "label"])
    last_id = int(frame["id"].max()) if len(frame) else 0
    frame = frame.drop(columns="id")
    frame["task"] = frame["task"].astype(str)
    frame["worker"] = frame["worker"].astype(str)
    frame["label"] = frame["label"].astype(str)
    return frame, last_id


def load_golden(session: Session, job_id: int) -> pd.Series:
    rows = session.execute(select(Item.id, Item.answer).where(Item.job_id == job_id, Item.is_golden.is_(True))).all()
    return pd.Series({str(r.id): str(r.answer) for r in rows}, dtype=object)


def aggregate_job(session: Session, job_id: int) -> dict[str, Any]:
    """Recompute the job's aggregates and worker quality from its current answers."""
    started = time.perf_counter()
    job = session.get(Job, job_id)
    if job is None:
        return {"job_id": job_id, "skipped": "no such job"}
    answers, last_id = load_answers(session, job_id)
    golden = load_golden(session, job_id)
    method, labels = job.aggregation, job.annotation["labels"]
    session.commit()  # no transaction (on SQLite: no write lock) while the model fits
    result = aggregation.aggregate(answers, method=method, golden=golden, labels=labels)
    real = result.labels[~result.labels.index.isin(golden.index)]
    now = utcnow()
    session.execute(delete(Aggregate).where(Aggregate.job_id == job_id))
    if len(real):
        session.execute(
            insert(Aggregate),
            [
                {
                    "job_id": job_id,
                    "item_id": int(task),
                    "label": str(label),
                    "confidence": float(result.confidence[task]),
                    "method": result.method,
                    "version": result.version,
                    "answers": int(result.answers_used[task]),
                    "updated_at": now,
                }
                for task, label in real.items()
            ],
        )
    _store_quality(session, job_id, answers, golden, real)
    extended = extend_unsure(session, job, result.confidence[real.index], result.answers_used[real.index])
    seconds = time.perf_counter() - started
    session.add(
        AggregationRun(
            job_id=job_id,
            method=result.method,
            version=result.version,
            answers_used=len(answers),
            last_answer_id=last_id,
            items=len(real),
            seconds=round(seconds, 4),
        )
    )
    session.commit()
    return {
        "job_id": job_id,
        "items": len(real),
        "answers": len(answers),
        "method": result.method,
        "seconds": round(seconds, 3),
        "answers_added": extended,
    }


def _store_quality(session: Session, job_id: int, answers: pd.DataFrame, golden: pd.Series, labels: pd.Series) -> None:
    scores = aggregation.golden_scores(answers, golden)
    agree = aggregation.agreement(answers, labels)
    counts = answers.groupby("worker").size()
    now = utcnow()
    session.execute(delete(WorkerQuality).where(WorkerQuality.job_id == job_id))
    rows = []
    for worker, n in counts.items():
        score = scores.loc[worker] if worker in scores.index else None
        rows.append(
            {
                "job_id": job_id,
                "worker_id": int(worker),
                "answers": int(n),
                "golden_seen": int(score["golden_seen"]) if score is not None else 0,
                "golden_correct": int(score["golden_correct"]) if score is not None else 0,
                "golden_accuracy": float(score["golden_accuracy"])
                if score is not None and score["golden_seen"]
                else None,
                "agreement": float(agree[worker]) if worker in agree.index else None,
                "updated_at": now,
            }
        )
    if rows:
        session.execute(insert(WorkerQuality), rows)


def last_run(session: Session, job_id: int) -> AggregationRun | None:
    return session.execute(
        select(AggregationRun).where(AggregationRun.job_id == job_id).order_by(AggregationRun.id.desc()).limit(1)
    ).scalar_one_or_none()


def latest_answer_id(session: Session, job_id: int) -> int:
    return int(
        session.execute(select(func.coalesce(func.max(Answer.id), 0)).where(Answer.job_id == job_id)).scalar_one()
    )
