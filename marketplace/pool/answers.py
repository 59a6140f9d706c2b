"""Answers left out of aggregation (a ban with `exclude_answers`): they stay stored, marked
`excluded`, and the rounds they filled are given back, so the freed redundancy is issued again
to other workers (a finished job reopens)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from marketplace.models import Answer, Job
from marketplace.pool import slots


def exclude(session: Session, worker_id: int, jobs: Any) -> tuple[int, set[int]]:
    """Exclude the worker's answers (on the jobs of the subquery `jobs`, or everywhere when None);
    (answers excluded, jobs that were completed and run again)."""
    query = select(Answer.id, Answer.job_id, Answer.item_id, Answer.round).where(
        Answer.worker_id == worker_id, Answer.excluded.is_(False)
    )
    if jobs is not None:
        query = query.where(Answer.job_id.in_(jobs))
    rows = session.execute(query.with_for_update()).all()
    if not rows:
        return 0, set()
    session.execute(update(Answer).where(Answer.id.in_([r.id for r in rows])).values(excluded=True, round=None))
    freed: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for row in rows:
        if row.round is not None:
            freed[row.job_id].append((row.item_id, row.round))
    reopened: set[int] = set()
    for job_id in sorted(freed):
        job = session.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one()
        was = job.state
        slots.give_back(session, job, freed[job_id])
        if job.state != was:
            reopened.add(job_id)
    return len(rows), reopened
