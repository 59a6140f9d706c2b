"""Dynamic overlap: every item gets the minimum, then one more worker at a time while the
aggregate's confidence stays below the job's target and the item is under its maximum (for
annotation jobs: while its answers do not agree, `fusing.py`).

Runs after each aggregation, on the pool: an unsure item gets a slot for its next round, so
the hot path needs no change and over-redundancy stays impossible (rounds stay unique).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlmodel import Session

from marketplace.models import Job, JobState
from marketplace.pool import slots

CHUNK = 5000


def extend_unsure(session: Session, job: Any, confidence: pd.Series, answers_used: pd.Series) -> int:
    """Queue one more answer for each unsure real item; returns how many were queued."""
    if not job.overlap_max or job.target_confidence is None:
        return 0
    unsure = [
        int(task)
        for task, value in confidence.items()
        if value < job.target_confidence and int(answers_used[task]) < job.overlap_max
    ]
    return extend_tasks(session, job, unsure)


def extend_tasks(session: Session, job: Any, unsure: list[int]) -> int:
    """Queue one more answer for each of the `unsure` items of a running (or finished) job."""
    if not unsure:
        return 0
    # Read under the job's lock: a submit that finishes the job at the same time locks it too.
    locked = session.execute(select(Job).where(Job.id == job.id).with_for_update()).scalar_one()
    if locked.state not in (JobState.RUNNING, JobState.COMPLETED):
        return 0
    added = 0
    for start in range(0, len(unsure), CHUNK):
        added += slots.extend(session, job.id, unsure[start : start + CHUNK])
    if added:
        slots.follow_pool(session, locked)
    return added
