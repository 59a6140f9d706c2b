"""A job's money: the budget its requester puts in, the holds its leases take, what is left.

Launch moves the budget from the requester to `job:{id}:budget`; each lease moves its task's
worst case (`entries x job.item_hold_cents`) to `job:{id}:holds` (inside the lease statement,
`ledger.LEASE_HOLD`; a qualification test with `hold_for_lease`); expiry, skip and revocation
move it back; a decision pays the worker from the hold and returns the rest (`acceptance.py`);
cancelling returns what is left to the requester. A lease is only issued while the budget
covers a whole task's worst case.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from marketplace.errors import Invalid
from marketplace.models import Assignment, Decision, Job, JobState, LedgerKind, Slot
from marketplace.services import ledger
from marketplace.services.ledger import InsufficientFunds, budget_account, holds_account, requester_account


def task_worst_case(job: Job) -> int:
    return int(job.items_per_task * job.item_hold_cents)


def put_in(session: Session, job: Job) -> int:
    """What the requester has given the job so far (budget movements, net)."""
    return ledger.totals_by_kind(session, job.id, budget_account(job.id)).get(LedgerKind.BUDGET, 0)


def apply_budget(session: Session, job: Job, actor_id: int | None) -> None:
    """Make the money given to the job equal `job.budget_cents`: top up from the requester or
    hand back what is neither held nor spent. A budget is a level, not an amount to add, so a
    retried request moves nothing. Drafts hold no money until launch."""
    if job.state == JobState.DRAFT:
        return
    ledger.open_accounts(session, [budget_account(job.id), holds_account(job.id)], job.currency)
    delta = job.budget_cents - put_in(session, job)
    moves = (
        [(requester_account(job.requester_id), budget_account(job.id), delta)]
        if delta > 0
        else [(budget_account(job.id), requester_account(job.requester_id), -delta)]
    )
    try:
        ledger.post(session, LedgerKind.BUDGET, moves, currency=job.currency, job_id=job.id, actor_id=actor_id)
    except InsufficientFunds:
        if delta > 0:
            available = ledger.balance(session, requester_account(job.requester_id))
            raise Invalid("budget_cents", f"more than the requester's available funds ({available} cents)") from None
        floor = job.budget_cents - delta - ledger.balance(session, budget_account(job.id))
        raise Invalid("budget_cents", f"below what is already held or spent ({floor} cents)") from None


def can_afford(session: Session, job_id: int, worst_case: int) -> bool:
    """The budget covers a task's worst case (always, for unpaid work)."""
    return worst_case == 0 or ledger.balance(session, budget_account(job_id)) >= worst_case


def hold_for_lease(session: Session, job_id: int, currency: str, assignment_id: int, cents: int) -> None:
    """Move a new lease's worst case into the job's holds (a qualification test: see `pool/tests.py`;
    a task's hold is written by the lease statement itself, `ledger.LEASE_HOLD`)."""
    ledger.post(
        session,
        LedgerKind.HOLD,
        [(budget_account(job_id), holds_account(job_id), cents)],
        currency=currency,
        job_id=job_id,
        assignment_id=assignment_id,
    )


def release_holds(session: Session, job_id: int, released: list[tuple[int, int]], why: str) -> None:
    """Give back the holds of leases that ended without work (expired, skipped, revoked);
    `released` is (assignment id, hold) of leases this transaction just ended."""
    cents = sum(hold for _, hold in released)
    if cents == 0:
        return
    job = session.get(Job, job_id)
    assert job is not None
    ledger.post(
        session,
        LedgerKind.RELEASE,
        [(holds_account(job_id), budget_account(job_id), cents)],
        currency=job.currency,
        job_id=job_id,
        assignment_id=released[0][0] if len(released) == 1 else None,
        memo=f"{why}: {len(released)} lease(s)",
    )
    if job.state == JobState.CANCELLED:
        refund_rest(session, job)


def refund_rest(session: Session, job: Job) -> int:
    """Return the unspent budget of a cancelled job to its requester."""
    rest = ledger.balance(session, budget_account(job.id))
    ledger.post(
        session,
        LedgerKind.REFUND,
        [(budget_account(job.id), requester_account(job.requester_id), rest)],
        currency=job.currency,
        job_id=job.id,
        memo="unspent budget returned",
    )
    return rest


def status(session: Session, job: Job) -> dict[str, Any]:
    """The budget as the requester's progress view shows it."""
    available = ledger.balance(session, budget_account(job.id))
    held = ledger.balance(session, holds_account(job.id))
    free = session.execute(select(func.count()).where(Slot.job_id == job.id)).scalar_one()
    live = job.state in (JobState.RUNNING, JobState.PAUSED)
    exhausted = live and free > 0 and not can_afford(session, job.id, task_worst_case(job))
    return {
        "currency": job.currency,
        "budget_cents": job.budget_cents,
        "available_cents": available,
        "held_cents": held,
        "task_worst_case_cents": task_worst_case(job),
        "exhausted": exhausted,
        "note": "the budget cannot pay for another task: raise budget_cents to go on" if exhausted else None,
    }


def spend(session: Session, job: Job) -> dict[str, Any]:
    """Where the job's money went: work, bonuses, refunds, and what is held or left."""
    to_workers = ledger.totals_by_kind(session, job.id, "worker:")
    to_requester = ledger.totals_by_kind(session, job.id, requester_account(job.requester_id))
    decided: dict[str, int] = dict(
        session.execute(
            select(Assignment.decision, func.count())
            .where(Assignment.job_id == job.id, Assignment.decision.is_not(None))
            .group_by(Assignment.decision)
        ).all()
    )
    return {
        "job_id": job.id,
        "currency": job.currency,
        "budget_cents": job.budget_cents,
        "work_cents": to_workers.get(LedgerKind.WORK, 0),
        "bonus_cents": to_workers.get(LedgerKind.BONUS, 0),
        "refunded_cents": to_requester.get(LedgerKind.REFUND, 0),
        "held_cents": ledger.balance(session, holds_account(job.id)),
        "available_cents": ledger.balance(session, budget_account(job.id)),
        "accepted": int(decided.get(Decision.ACCEPTED, 0)),
        "rejected": int(decided.get(Decision.REJECTED, 0)),
    }
