"""Banning workers: no new work at once, open leases revoked, answers optionally excluded.

Excluded answers stay stored (marked `excluded`, their round released), and the rounds they
had filled go back to the pool, so the freed redundancy is issued again to other workers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import insert, select, update
from sqlmodel import Session

from marketplace.errors import Conflict, NotFound
from marketplace.models import Account, Answer, Assignment, AuditEvent, Job, Slot, utcnow
from marketplace.services.leasing import release_assignments


def _locked_worker(session: Session, worker_id: int) -> Account:
    account = session.execute(select(Account).where(Account.id == worker_id).with_for_update()).scalar_one_or_none()
    if account is None or account.role != "worker":
        raise NotFound(f"worker {worker_id} not found")
    return account


def ban_worker(session: Session, worker_id: int, actor_id: int, reason: str, exclude_answers: bool) -> dict[str, Any]:
    """Ban everywhere. Returns what it did; the audit log records the same."""
    account = _locked_worker(session, worker_id)
    if account.status == "banned":
        raise Conflict(f"worker {worker_id} is already banned")
    account.status = "banned"
    session.add(account)
    session.flush()  # from here on the worker's next lease (which locks this row) sees the ban
    now = utcnow()
    open_leases = session.execute(
        select(Assignment.job_id, Assignment.id)
        .where(Assignment.worker_id == worker_id, Assignment.state == "leased")
        .with_for_update()
    ).all()
    by_job: dict[int, list[int]] = defaultdict(list)
    for job_id, assignment_id in open_leases:
        by_job[job_id].append(assignment_id)
    for job_id, ids in by_job.items():
        release_assignments(session, job_id, ids, "revoked", now)
    reopened: set[int] = set()
    excluded = _exclude_answers(session, worker_id, reopened) if exclude_answers else 0
    details = {"revoked_leases": len(open_leases), "excluded_answers": excluded, "jobs_reopened": sorted(reopened)}
    session.add(
        AuditEvent(
            actor_id=actor_id,
            action="ban",
            subject_type="worker",
            subject_id=worker_id,
            reason=reason,
            details={"scope": "everywhere", "exclude_answers": exclude_answers, **details},
        )
    )
    session.commit()
    return {"worker_id": worker_id, "status": "banned", **details, "jobs_to_aggregate": sorted(set(by_job) | reopened)}


def _exclude_answers(session: Session, worker_id: int, reopened: set[int]) -> int:
    """Mark the worker's answers excluded and put the rounds they filled back in the pool."""
    rows = session.execute(
        select(Answer.id, Answer.job_id, Answer.item_id, Answer.round)
        .where(Answer.worker_id == worker_id, Answer.excluded.is_(False))
        .with_for_update()
    ).all()
    if not rows:
        return 0
    session.execute(update(Answer).where(Answer.id.in_([r.id for r in rows])).values(excluded=True, round=None))
    freed = [{"job_id": r.job_id, "item_id": r.item_id, "round": r.round} for r in rows if r.round is not None]
    if freed:
        session.execute(insert(Slot), freed)
        jobs = {r["job_id"] for r in freed}
        completed = (
            session.execute(select(Job.id).where(Job.id.in_(jobs), Job.state == "completed").with_for_update())
            .scalars()
            .all()
        )
        if completed:
            session.execute(update(Job).where(Job.id.in_(completed)).values(state="running", updated_at=utcnow()))
            reopened.update(completed)
    return len(rows)


def unban_worker(session: Session, worker_id: int, actor_id: int, reason: str) -> dict[str, Any]:
    account = _locked_worker(session, worker_id)
    if account.status != "banned":
        raise Conflict(f"worker {worker_id} is not banned")
    account.status = "active"
    session.add(account)
    session.add(
        AuditEvent(
            actor_id=actor_id, action="unban", subject_type="worker", subject_id=worker_id, reason=reason, details={}
        )
    )
    session.commit()
    return {"worker_id": worker_id, "status": "active"}


def audit_log(session: Session, after: int, limit: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id).limit(limit)
    ).scalars()
    return [e.model_dump() for e in rows]
