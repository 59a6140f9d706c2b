"""A worker gives a task back: its real slots return to the pool (other workers get them), the
worker never sees those items again, and the task's hold goes back to the budget."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from marketplace.errors import Conflict, NotFound
from marketplace.models import Assignment, AssignmentState, utcnow
from marketplace.pool.release import release_assignments
from marketplace.pool.submit import SubmitResult


def skip(session: Session, worker_id: int, assignment_id: int) -> SubmitResult:
    assignment = session.execute(
        select(Assignment).where(Assignment.id == assignment_id).with_for_update()
    ).scalar_one_or_none()
    if assignment is None or assignment.worker_id != worker_id:
        raise NotFound(f"assignment {assignment_id} not found")
    if assignment.state != AssignmentState.LEASED:
        raise Conflict(f"assignment is {assignment.state}")
    release_assignments(session, assignment.job_id, [assignment_id], AssignmentState.SKIPPED, utcnow())
    session.commit()
    return SubmitResult(
        id=assignment_id, state=AssignmentState.SKIPPED, answers=0, submitted_at=None, job_id=assignment.job_id
    )
