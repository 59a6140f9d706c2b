"""Submitted tasks' decisions, each written once: accepted (with what it paid) or rejected."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session

from marketplace.models import Decision

RECORD = text(
    "UPDATE assignment a SET decision = d.decision, decision_reason = d.reason, decided_at = :now, paid_cents = d.paid "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:decisions AS varchar[]), CAST(:reasons AS varchar[]), "
    "CAST(:paid AS integer[])) AS d(id, decision, reason, paid) "
    "WHERE a.id = d.id AND a.decision IS NULL AND a.state = 'submitted' "
    "RETURNING a.id"
)


@dataclass(frozen=True)
class Outcome:
    assignment_id: int
    decision: Decision
    reason: str
    paid_cents: int | None  # work + bonus when accepted


def record(session: Session, outcomes: list[Outcome], now: datetime) -> set[int]:
    """Write the decisions in one statement, skipping tasks another run decided first; the ids
    written (a concurrent run's UPDATE waits on the row and then finds it decided)."""
    if not outcomes:
        return set()
    params = {
        "ids": [o.assignment_id for o in outcomes],
        "decisions": [str(o.decision) for o in outcomes],
        "reasons": [o.reason for o in outcomes],
        "paid": [o.paid_cents for o in outcomes],
        "now": now,
    }
    return {int(i) for i in session.execute(RECORD, params).scalars()}
