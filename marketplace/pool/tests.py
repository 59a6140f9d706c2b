"""Qualification tests: the lease of a job that asks for a qualification, for a worker who has
not passed it yet (see `services/qualification.py` for who passes).

A test is an ordinary assignment holding exactly `items` golden items of the job that the worker
has never seen, and nothing real (which is how a test is told from a task, whose every lease holds
a real item). Its entries have no round, so `uq_seen_once` keeps these items from the worker from
now on. Tests are paid and held like tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlmodel import Session

from marketplace.models import Assignment, AssignmentItem, AssignmentState, Item, Job, JobState, Slot
from marketplace.pool.randomness import shuffled
from marketplace.pool.slots import golden_cap
from marketplace.services import budget, qualification
from marketplace.services.pricing import task_pay
from marketplace.settings import Bonus, Pricing, QualificationSettings


@dataclass(frozen=True)
class TestLease:
    id: int
    expires_at: datetime
    items: list[dict[str, Any]]
    job: dict[str, Any]
    pay: dict[str, Any]


def gate(session: Session, job_id: int, worker_id: int, now: datetime) -> bool | TestLease:
    """True: the worker may have real tasks of the job now (qualified, or the job no longer asks:
    lease again); a TestLease: a test just leased; False: nothing from this job now (a test is
    out, the worker failed, or too few unseen golden items are left for a test)."""
    job = session.execute(select(Job).where(Job.id == job_id)).scalar_one_or_none()
    if job is None or job.state != JobState.RUNNING or job.qualification is None:
        return True
    settings = QualificationSettings.load(job.qualification)
    stand = qualification.admission(session, job.id, job.requester_id, settings, worker_id, now)
    if stand == qualification.QUALIFIED:
        return True
    if stand != qualification.TEST:
        return False
    return _lease_test(session, job, settings, worker_id, now) or False


def _lease_test(
    session: Session, job: Job, settings: QualificationSettings, worker_id: int, now: datetime
) -> TestLease | None:
    """`settings.items` random golden items of the job that the worker has never seen; None
    when fewer are left, when the job has no free work left to qualify for, or when its budget
    cannot pay a test."""
    assert job.id is not None
    if not session.execute(select(exists().where(Slot.job_id == job.id))).scalar_one():
        return None
    seen = exists().where(
        AssignmentItem.job_id == job.id, AssignmentItem.worker_id == worker_id, AssignmentItem.item_id == Item.id
    )
    cap = golden_cap(job)
    golden = list(
        session.execute(
            select(Item.id)
            .where(Item.job_id == job.id, Item.is_golden.is_(True), Item.shown < cap, ~seen)
            .order_by(func.random())
            .limit(settings.items)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if len(golden) < settings.items or not budget.can_afford(session, job.id, settings.items * job.item_hold_cents):
        return None
    session.execute(update(Item).where(Item.id.in_(golden)).values(shown=Item.shown + 1))
    expires_at = now + timedelta(seconds=job.lease_seconds)
    hold = len(golden) * job.item_hold_cents
    assignment_id = session.execute(
        insert(Assignment)
        .values(
            job_id=job.id,
            worker_id=worker_id,
            state=AssignmentState.LEASED,
            created_at=now,
            expires_at=expires_at,
            hold_cents=hold,
        )
        .returning(Assignment.id)
    ).scalar_one()
    budget.hold_for_lease(session, job.id, job.currency, assignment_id, hold)
    entries = [
        {"assignment_id": assignment_id, "job_id": job.id, "worker_id": worker_id, "item_id": item, "position": n}
        for n, item in enumerate(shuffled(golden))
    ]
    refs = session.execute(
        insert(AssignmentItem).returning(AssignmentItem.id, AssignmentItem.item_id, sort_by_parameter_order=True),
        entries,
    ).all()
    found = session.execute(select(Item.id, Item.data).where(Item.job_id == job.id, Item.id.in_(golden)))
    data: dict[int, Any] = dict(found.tuples().all())
    qualification.start(session, job.id, worker_id, assignment_id, settings.items, now)
    view = {"id": job.id, "title": job.title, "instructions": job.instructions, "annotation": job.annotation}
    items = [{"id": ref.id, "data": data[ref.item_id]} for ref in refs]
    pricing, bonus = Pricing.load(job.pricing, job.reward_cents), Bonus.load(job.bonus)
    pay = task_pay(pricing, bonus, job.annotation["type"], len(items), job.currency)
    return TestLease(id=assignment_id, expires_at=expires_at, items=items, job=view, pay=pay)
