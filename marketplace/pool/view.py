"""A worker's own task, read back: as it was leased (with what it pays), its state, the answers
the worker gave, and its decision once made."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from marketplace.errors import NotFound
from marketplace.models import Answer, Assignment, AssignmentItem, AssignmentKind, AssignmentState, Item, Job
from marketplace.services.pricing import task_pay
from marketplace.settings import Bonus, Pricing


def own_assignment(session: Session, worker_id: int, assignment_id: int) -> dict[str, Any]:
    assignment = session.get(Assignment, assignment_id)
    if assignment is None or assignment.worker_id != worker_id:
        raise NotFound(f"assignment {assignment_id} not found")
    job = session.get(Job, assignment.job_id)
    assert job is not None
    rows = session.execute(
        select(AssignmentItem.id, Item.data, Item.is_golden, Answer.label)
        .join(Item, Item.id == AssignmentItem.item_id)
        .outerjoin(
            Answer,
            (Answer.assignment_id == AssignmentItem.assignment_id) & (Answer.item_id == AssignmentItem.item_id),
        )
        .where(AssignmentItem.assignment_id == assignment_id, Item.job_id == assignment.job_id)
        .order_by(AssignmentItem.position)
    ).all()
    test = bool(rows) and all(r.is_golden for r in rows)  # a task always holds a real item
    submitted = assignment.state == AssignmentState.SUBMITTED
    pricing = Pricing.load(job.pricing, job.reward_cents)
    return {
        "id": assignment.id,
        "kind": AssignmentKind.QUALIFICATION if test else AssignmentKind.TASK,
        "state": assignment.state,
        "expires_at": assignment.expires_at,
        "items": [{"id": r.id, "data": r.data} for r in rows],
        "job": {"id": job.id, "title": job.title, "instructions": job.instructions, "annotation": job.annotation},
        "pay": task_pay(pricing, Bonus.load(job.bonus), job.annotation["type"], len(rows), job.currency),
        "submitted_answers": [{"item_id": r.id, "label": r.label} for r in rows] if submitted else [],
        "submitted_at": assignment.finished_at if submitted else None,
        "decision": assignment.decision,
        "decision_reason": assignment.decision_reason,
        "paid_cents": assignment.paid_cents,
    }
