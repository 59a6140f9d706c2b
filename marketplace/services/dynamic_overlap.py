"""Dynamic overlap: every item gets the minimum, then one more worker at a time while the
aggregate's confidence stays below the job's target and the item is under its maximum.

Runs after each aggregation, on the pool: an unsure item gets a slot for its next round, so
the hot path needs no change and over-redundancy stays impossible (rounds stay unique).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import func, insert, select, update
from sqlmodel import Session

from marketplace.models import Answer, Assignment, AssignmentItem, Job, Slot, utcnow

CHUNK = 5000


def extend_unsure(session: Session, job: Any, confidence: pd.Series, answers_used: pd.Series) -> int:
    """Queue one more answer for each unsure real item; returns how many were queued."""
    if not job.overlap_max or job.target_confidence is None:
        return 0
    # Read under the job's lock: a submit that finishes the job at the same time locks it too.
    state = session.execute(select(Job.state).where(Job.id == job.id).with_for_update()).scalar_one()
    if state not in ("running", "completed"):
        return 0
    unsure = [
        int(task)
        for task, value in confidence.items()
        if value < job.target_confidence and int(answers_used[task]) < job.overlap_max
    ]
    added = 0
    for start in range(0, len(unsure), CHUNK):
        added += _extend(session, job.id, unsure[start : start + CHUNK])
    if added and state == "completed":
        session.execute(update(Job).where(Job.id == job.id).values(state="running", updated_at=utcnow()))
    return added


def _extend(session: Session, job_id: int, items: list[int]) -> int:
    pending = set(
        session.execute(select(Slot.item_id).where(Slot.job_id == job_id, Slot.item_id.in_(items))).scalars()
    ) | set(
        session.execute(
            select(AssignmentItem.item_id)
            .join(Assignment, Assignment.id == AssignmentItem.assignment_id)
            .where(AssignmentItem.job_id == job_id, AssignmentItem.item_id.in_(items), Assignment.state == "leased")
        ).scalars()
    )
    last_round: dict[int, int | None] = dict(
        session.execute(
            select(Answer.item_id, func.max(Answer.round))
            .where(Answer.job_id == job_id, Answer.item_id.in_(items))
            .group_by(Answer.item_id)
        )
        .tuples()
        .all()
    )
    rows = [
        {"job_id": job_id, "item_id": item, "round": (last_round.get(item) or 0) + 1}
        for item in items
        if item not in pending and last_round.get(item) is not None
    ]
    if rows:
        session.execute(insert(Slot), rows)
    return len(rows)
