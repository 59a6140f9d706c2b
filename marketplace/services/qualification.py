"""Qualification: a job may ask workers to pass a short test on its golden items before they
get real tasks.

The test is an ordinary assignment holding exactly `items` golden items of the job that the
worker has never seen (leased by `pool/tests.py`; no real item, which is how a test is told from a
task, whose every lease holds at least one real item). Its answers are stored like any other;
the submit grades it here: a mean golden score (the share right, for labels; annotation answers
are scored first, `services/scoring.py`) of at least `pass_mark` passes, anything else fails, and a
failure is final for that job until an operator deletes the row (`reset`). A test that ends
without a submit (skipped, expired, revoked) leaves no trace here: the worker may take another
test, on golden items it has not seen yet, while the job has enough of them.

With `carry_over`, a worker whose golden record on the requester's other jobs already meets
the mark (at least `items` golden answers, not excluded, accuracy at least `pass_mark`) is
qualified at its first lease without a test (`source` carried).

Which row a worker has is read under the worker's account lock (the lock every lease takes
first), so one worker's concurrent leases never start two tests of one job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlmodel import Session

from marketplace.errors import NotFound
from marketplace.models import (
    Account,
    Answer,
    Assignment,
    AssignmentState,
    AuditEvent,
    Job,
    Qualification,
    QualificationState,
    utcnow,
)
from marketplace.pool.release import release_assignments
from marketplace.services import scoring
from marketplace.services.quality import golden_credit, golden_scored
from marketplace.settings import QualificationSettings

QUALIFIED = "qualified"  # passed (or carried over): real tasks
TEST = "test"  # no qualification yet: lease a test


def admission(
    session: Session, job_id: int, requester_id: int, settings: QualificationSettings, worker_id: int, now: datetime
) -> str | None:
    """Where the worker stands on a job that asks for a qualification: QUALIFIED, TEST, or None
    (nothing from this job now: a test is under way, or the worker failed it).

    Locks the worker's account row first. A pending test whose lease ended without a submit is
    forgotten (the worker may try again); one that was submitted but not graded (the process
    stopped in between) is graded now."""
    session.execute(select(Account.id).where(Account.id == worker_id).with_for_update())
    row = _row(session, job_id, worker_id)
    if row is not None and row.state == QualificationState.PENDING:
        lease = session.execute(select(Assignment.state).where(Assignment.id == row.assignment_id)).scalar_one_or_none()
        if lease == AssignmentState.LEASED:
            return None
        if lease == AssignmentState.SUBMITTED:
            assert row.assignment_id is not None
            passed = grade(session, job_id, worker_id, row.assignment_id, now) == QualificationState.PASSED
            return QUALIFIED if passed else None
        session.delete(row)  # skipped, expired or revoked: as if never taken
        session.flush()
        row = None
    if row is not None:
        return QUALIFIED if row.state == QualificationState.PASSED else None
    if settings.carry_over and _carry_over(session, job_id, requester_id, settings, worker_id, now):
        return QUALIFIED
    return TEST


def start(session: Session, job_id: int, worker_id: int, assignment_id: int, total: int, now: datetime) -> None:
    """Record a test just leased (under the worker's lock, see `admission`)."""
    session.add(
        Qualification(
            job_id=job_id, worker_id=worker_id, assignment_id=assignment_id, total=total, created_at=now, source="test"
        )
    )
    session.flush()


def grade(session: Session, job_id: int, worker_id: int, assignment_id: int, now: datetime) -> str | None:
    """Grade a submitted test from its stored answers: passed or failed, with an audit event.

    Safe to call again (a retried submit, a lease that found it ungraded): a decided test
    returns its state. None when the assignment is not this worker's test on the job (a
    task, or a test an operator has reset since)."""
    row = _row(session, job_id, worker_id, lock=True)
    if row is None or row.assignment_id != assignment_id:
        return None
    if row.state != QualificationState.PENDING:
        return row.state
    scoring.score_pending(session, job_id, assignment_id)  # a test is all golden: no secret to keep
    total, correct, credit = session.execute(
        select(func.count(), *_right_and_credit()).where(
            Answer.job_id == job_id,
            Answer.worker_id == worker_id,
            Answer.assignment_id == assignment_id,
            Answer.is_golden.is_(True),
        )
    ).one()
    stored = session.execute(select(Job.qualification).where(Job.id == job_id)).scalar_one()
    pass_mark = QualificationSettings.load(stored).pass_mark if stored else 0.0  # dropped meanwhile
    passed = total and credit / total >= pass_mark
    state = QualificationState.PASSED if passed else QualificationState.FAILED
    row.state, row.correct, row.total, row.decided_at = state, int(correct), int(total), now
    session.add(row)
    _audit(session, f"qualification_{state}", None, row, {"pass_mark": pass_mark})
    session.flush()
    return state


def reset(session: Session, job_id: int, worker_id: int, actor_id: int) -> None:
    """Delete the worker's qualification on the job (an operator's call): it may take a test
    again, on golden items it has not seen. A test still out is revoked."""
    row = _row(session, job_id, worker_id, lock=True)
    if row is None:
        raise NotFound(f"worker {worker_id} has no qualification on job {job_id}")
    if row.state == QualificationState.PENDING and row.assignment_id is not None:
        release_assignments(session, job_id, [row.assignment_id], AssignmentState.REVOKED, utcnow())
    _audit(session, "qualification_reset", actor_id, row, {"previous_state": row.state})
    session.delete(row)
    session.flush()


def qualifications(session: Session, job_id: int, after: int, limit: int) -> list[dict[str, Any]]:
    """The job's qualifications by worker id, from `after` (keyset)."""
    rows = session.execute(
        select(Qualification)
        .where(Qualification.job_id == job_id, Qualification.worker_id > after)
        .order_by(Qualification.worker_id)
        .limit(limit)
    ).scalars()
    return [r.model_dump() for r in rows]


def _row(session: Session, job_id: int, worker_id: int, lock: bool = False) -> Qualification | None:
    query = select(Qualification).where(Qualification.job_id == job_id, Qualification.worker_id == worker_id)
    return session.execute(query.with_for_update() if lock else query).scalar_one_or_none()


def _carry_over(
    session: Session, job_id: int, requester_id: int, settings: QualificationSettings, worker_id: int, now: datetime
) -> bool:
    """Qualify the worker from its golden answers on the requester's other jobs, if they meet the mark."""
    other_jobs = select(Job.id).where(Job.requester_id == requester_id, Job.id != job_id)
    seen, correct, credit = session.execute(
        select(func.count(), *_right_and_credit()).where(
            Answer.worker_id == worker_id,
            Answer.job_id.in_(other_jobs),
            golden_scored(),
            Answer.excluded.is_(False),
        )
    ).one()
    if seen < settings.items or credit / seen < settings.pass_mark:
        return False
    row = Qualification(
        job_id=job_id,
        worker_id=worker_id,
        state=QualificationState.PASSED,
        correct=int(correct),
        total=int(seen),
        source="carried",
        created_at=now,
        decided_at=now,
    )
    session.add(row)
    _audit(session, "qualification_passed", None, row, {"pass_mark": settings.pass_mark})
    session.flush()
    return True


def _right_and_credit() -> tuple[Any, Any]:
    """Golden answers right (or passing), and the sum of golden scores."""
    right = func.coalesce(func.sum(case((Answer.correct.is_(True), 1), else_=0)), 0)
    return right, func.coalesce(func.sum(golden_credit()), 0.0)


def _audit(session: Session, action: str, actor_id: int | None, row: Qualification, extra: dict[str, Any]) -> None:
    """The figures of a decision; never which items or answers."""
    session.add(
        AuditEvent(
            actor_id=actor_id,
            action=action,
            subject_type="worker",
            subject_id=row.worker_id,
            reason=f"qualification on job {row.job_id}",
            details={
                "job_id": row.job_id,
                "source": row.source,
                "correct": row.correct,
                "total": row.total,
                "assignment_id": row.assignment_id,
                **extra,
            },
        )
    )
