"""Workers' skills carried over from a requester's other jobs (the requester opts in).

A new job starts knowing its crowd: each worker's accuracy on the requester's other jobs
(golden answers, and agreement with the aggregate on the rest) becomes a prior on its skill
in this job's "auto" model, worth half an answer per earlier answer and at most
`MAX_ANSWERS`, so the job's own answers outweigh it soon. Jobs with different label counts
are made comparable as skill above chance, (accuracy - 1/K) / (1 - 1/K). Only the same
requester's jobs count: one requester's crowd history never reaches another's results.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlmodel import Session

from marketplace.models import Account, Job, WorkerQuality

PER_ANSWER = 0.5
"""Answers in the new job's model per answer on earlier jobs."""
MAX_ANSWERS = 40.0
"""The most a worker's history counts for, in answers of the new job."""


def _above_chance(accuracy: float, n_labels: int) -> float:
    return (accuracy - 1.0 / n_labels) / (1.0 - 1.0 / n_labels)


def known_workers(session: Session, job: Any) -> pd.DataFrame | None:
    """Per worker (index: worker id as a string): `accuracy` on this job's labels and
    `answers`, the weight of that history; None unless the requester opted in."""
    requester = session.get(Account, job.requester_id)
    n_labels = len((job.annotation or {}).get("labels") or [])
    if requester is None or not requester.carry_over_skills or n_labels < 2:
        return None
    rows = session.execute(
        select(
            WorkerQuality.worker_id,
            WorkerQuality.answers,
            WorkerQuality.golden_seen,
            WorkerQuality.golden_correct,
            WorkerQuality.agreement,
            Job.annotation,
        )
        .join(Job, Job.id == WorkerQuality.job_id)
        .where(Job.requester_id == job.requester_id, Job.id != job.id)
    ).all()
    history = []
    for worker_id, answers, seen, correct, agreement, annotation in rows:
        k = len((annotation or {}).get("labels") or [])
        real = answers - seen
        right = correct + (agreement * real if agreement is not None else 0.0)
        counted = seen + (real if agreement is not None else 0)
        if k >= 2 and counted > 0:
            history.append((str(worker_id), _above_chance(right / counted, k), counted))
    if not history:
        return None
    frame = pd.DataFrame(history, columns=["worker", "skill", "answers"])
    frame["weighted"] = frame["skill"] * frame["answers"]
    per_worker = frame.groupby("worker")[["weighted", "answers"]].sum()
    skill = per_worker["weighted"] / per_worker["answers"]
    return pd.DataFrame(
        {
            "accuracy": (1.0 / n_labels + skill * (1.0 - 1.0 / n_labels)).clip(0.0, 1.0),
            "answers": (per_worker["answers"] * PER_ANSWER).clip(upper=MAX_ANSWERS),
        }
    )
