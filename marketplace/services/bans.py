"""Banning workers: no new work at once, open leases revoked, answers optionally excluded.

Excluded answers stay stored (marked `excluded`, their round released), and the rounds they
had filled go back to the pool, so the freed redundancy is issued again to other workers.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlmodel import Session

from marketplace.errors import Conflict, NotFound
from marketplace.models import (
    Account,
    AccountStatus,
    Assignment,
    AssignmentState,
    AuditEvent,
    Job,
    Role,
    WorkerBlock,
    utcnow,
)
from marketplace.pool import answers
from marketplace.pool.release import release_assignments
from marketplace.services import ledger


def _locked_worker(session: Session, worker_id: int) -> Account:
    account = session.execute(select(Account).where(Account.id == worker_id).with_for_update()).scalar_one_or_none()
    if account is None or account.role != Role.WORKER:
        raise NotFound(f"worker {worker_id} not found")
    return account


def ban_worker(
    session: Session,
    worker_id: int,
    actor_id: int | None,
    reason: str,
    exclude_answers: bool,
    *,
    job_id: int | None = None,
    requester_id: int | None = None,
    until: datetime | None = None,
    rule_id: int | None = None,
    figures: dict[str, Any] | None = None,
    commit: bool = True,
) -> dict[str, Any]:
    """Ban everywhere, or block from one job (`job_id`), one requester's jobs
    (`requester_id`), or for a while (`until`).

    Returns what it did; the audit log records the same, with the figures that fired a rule.
    """
    account = _locked_worker(session, worker_id)  # leases lock this row first: they wait for us
    if job_id is None and requester_id is None and until is None:
        if account.status == AccountStatus.BANNED:
            raise Conflict(f"worker {worker_id} is already banned")
        account.status = AccountStatus.BANNED
        session.add(account)
        action = "ban"
    else:
        session.add(
            WorkerBlock(
                worker_id=worker_id,
                job_id=job_id,
                requester_id=requester_id,
                until=until,
                reason=reason,
                rule_id=rule_id,
            )
        )
        action = "cooldown" if until is not None else ("ban_job" if job_id is not None else "ban_requester")
    session.flush()
    now = utcnow()
    leases = select(Assignment.job_id, Assignment.id).where(
        Assignment.worker_id == worker_id, Assignment.state == AssignmentState.LEASED
    )
    jobs = _scope_jobs(job_id, requester_id)
    if jobs is not None:
        leases = leases.where(Assignment.job_id.in_(jobs))
    open_leases = session.execute(leases.with_for_update()).all()
    by_job: dict[int, list[int]] = defaultdict(list)
    for lease_job, assignment_id in open_leases:
        by_job[lease_job].append(assignment_id)
    ledger.lock_balances(session, [a for j in by_job for a in (ledger.budget_account(j), ledger.holds_account(j))])
    for lease_job, ids in by_job.items():
        release_assignments(session, lease_job, ids, AssignmentState.REVOKED, now)
    excluded, reopened = answers.exclude(session, worker_id, jobs) if exclude_answers else (0, set())
    details = {"revoked_leases": len(open_leases), "excluded_answers": excluded, "jobs_reopened": sorted(reopened)}
    scope = {
        "scope": "everywhere" if job_id is None else f"job {job_id}",
        "until": until.isoformat() if until else None,
    }
    session.add(
        AuditEvent(
            actor_id=actor_id,
            action=action,
            subject_type="worker",
            subject_id=worker_id,
            reason=reason,
            details={
                **scope,
                "exclude_answers": exclude_answers,
                "rule_id": rule_id,
                "figures": figures or {},
                **details,
            },
        )
    )
    if commit:
        session.commit()
    return {
        "worker_id": worker_id,
        "status": account.status,
        **details,
        "jobs_to_aggregate": sorted(set(by_job) | reopened),
    }


def _scope_jobs(job_id: int | None, requester_id: int | None) -> Any:
    """The jobs a scoped ban covers (a subquery), or None for everywhere."""
    if job_id is not None:
        return select(Job.id).where(Job.id == job_id)
    if requester_id is not None:
        return select(Job.id).where(Job.requester_id == requester_id)
    return None


def unban_worker(session: Session, worker_id: int, actor_id: int, reason: str) -> dict[str, Any]:
    account = _locked_worker(session, worker_id)
    now = utcnow()
    active = or_(WorkerBlock.until.is_(None), WorkerBlock.until > now)
    ended = session.execute(
        update(WorkerBlock).where(WorkerBlock.worker_id == worker_id, active).values(until=now)
    ).rowcount
    if account.status != AccountStatus.BANNED and not ended:
        raise Conflict(f"worker {worker_id} is not banned")
    account.status = AccountStatus.ACTIVE
    session.add(account)
    session.add(
        AuditEvent(
            actor_id=actor_id, action="unban", subject_type="worker", subject_id=worker_id, reason=reason, details={}
        )
    )
    session.commit()
    return {"worker_id": worker_id, "status": AccountStatus.ACTIVE}


def audit_log(session: Session, after: int, limit: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id).limit(limit)
    ).scalars()
    return [e.model_dump() for e in rows]
