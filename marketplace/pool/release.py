"""Leases that end without answers: expired, skipped or revoked. Their real slots go back to the
pool and their holds back to the job's budget, in the caller's transaction.

Leases expire without a cron: a lease reclaims overdue leases of its job every few seconds and
whenever the pool runs dry for it (`reclaim_now_and_then`, `reclaim_apart`), and the RQ sweep
does it for every job. A submit counts as in time when it *arrives* before the deadline;
reclaiming waits a grace period past the deadline, so a submit in flight is never lost.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from marketplace.models import Assignment, AssignmentItem, AssignmentState, Job
from marketplace.pool import slots
from marketplace.pool.connection import database_key
from marketplace.services import budget

# A submit that arrived before its deadline may still be in flight for this long.
EXPIRY_GRACE = timedelta(seconds=60)
RECLAIM_EVERY_SECONDS = 5.0
_last_reclaim: dict[tuple[str, int], float] = {}


def release_assignments(
    session: Session, job_id: int, assignment_ids: list[int], state: AssignmentState, now: datetime
) -> int:
    """End the open leases among `assignment_ids` (of one job) with `state`, return their real
    slots to the pool and their holds to the job's budget; how many were open."""
    ended = session.execute(
        update(Assignment)
        .where(Assignment.id.in_(assignment_ids), Assignment.state == AssignmentState.LEASED)
        .values(state=state, finished_at=now)
        .returning(Assignment.id, Assignment.hold_cents)
    ).all()
    if not ended:
        return 0
    budget.release_holds(session, job_id, [(row.id, row.hold_cents) for row in ended], state)
    rounds = session.execute(
        select(AssignmentItem.item_id, AssignmentItem.round).where(
            AssignmentItem.assignment_id.in_([row.id for row in ended]), AssignmentItem.round.is_not(None)
        )
    ).all()
    job = session.get(Job, job_id)
    assert job is not None
    slots.give_back(session, job, [(row.item_id, row.round) for row in rounds])
    return len(ended)


def reclaim_expired(session: Session, job_id: int, now: datetime, limit: int = 200) -> int:
    """Expire leases of the job past their deadline (plus grace); how many."""
    due = (
        session.execute(
            select(Assignment.id)
            .where(
                Assignment.job_id == job_id,
                Assignment.state == AssignmentState.LEASED,
                Assignment.expires_at < now - EXPIRY_GRACE,
            )
            .order_by(Assignment.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    if not due:
        return 0
    return release_assignments(session, job_id, list(due), AssignmentState.EXPIRED, now)


def reclaim_apart(engine: Engine, job_id: int, now: datetime) -> int:
    """`reclaim_expired` in a transaction of its own."""
    with Session(engine, expire_on_commit=False) as session:
        count = reclaim_expired(session, job_id, now)
        session.commit()
    return count


def reclaim_now_and_then(engine: Engine, job_id: int, now: datetime) -> None:
    """Expire overdue leases of the job at most every few seconds per process: a deployment
    without a running RQ worker does not stall on expired leases, and a lease rarely pays for it."""
    key = (database_key(engine), job_id)
    if time.monotonic() >= _last_reclaim.get(key, 0.0) + RECLAIM_EVERY_SECONDS:
        _last_reclaim[key] = time.monotonic()
        reclaim_apart(engine, job_id, now)
