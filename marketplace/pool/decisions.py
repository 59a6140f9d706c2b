"""A submitted task's decision, written once: accepted (with what it paid) or rejected."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session

from marketplace.models import Assignment, AssignmentState, Decision


def record(
    session: Session, assignment_id: int, decision: Decision, reason: str, paid_cents: int | None, now: datetime
) -> bool:
    """Write the decision unless one was written already (another run decided it first: False)."""
    written = session.execute(
        update(Assignment)
        .where(
            Assignment.id == assignment_id,
            Assignment.decision.is_(None),
            Assignment.state == AssignmentState.SUBMITTED,
        )
        .values(decision=decision, decision_reason=reason, decided_at=now, paid_cents=paid_cents)
    ).rowcount
    return bool(written == 1)
