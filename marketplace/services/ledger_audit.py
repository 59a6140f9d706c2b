"""The ledger's audit: everything that must hold of the money, recomputed from the entries.

Run by the operator (`marketplace ledger check`, `GET /v1/ledger/check`), after every money
test, and by the benchmarks after their runs. `ledger` writes; this only reads.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlmodel import Session

from marketplace.models import Assignment, Job, LedgerBalance, LedgerEntry, LedgerKind, LedgerTxn
from marketplace.pool import slots
from marketplace.services.ledger import holds_account


def check(session: Session) -> list[str]:
    """Everything that must hold of the money, recomputed from the entries; the problems found
    (an empty list when the ledger is sound)."""
    problems: list[str] = []
    unbalanced = session.execute(
        select(LedgerEntry.txn_id, LedgerEntry.currency, func.sum(LedgerEntry.amount))
        .group_by(LedgerEntry.txn_id, LedgerEntry.currency)
        .having(func.sum(LedgerEntry.amount) != 0)
        .limit(20)
    ).all()
    problems += [f"movement {t} does not balance in {c}: {s:+d}" for t, c, s in unbalanced]
    empty = session.execute(
        select(LedgerTxn.id).where(~exists().where(LedgerEntry.txn_id == LedgerTxn.id)).limit(20)
    ).scalars()
    problems += [f"movement {t} has no entries" for t in empty]
    derived: dict[str, int] = dict(
        session.execute(select(LedgerEntry.account, func.sum(LedgerEntry.amount)).group_by(LedgerEntry.account)).all()
    )
    kept: dict[str, int] = dict(session.execute(select(LedgerBalance.account, LedgerBalance.balance)).all())
    for account in sorted(set(derived) | set(kept)):
        entries_sum, cached = int(derived.get(account, 0)), int(kept.get(account, 0))
        if entries_sum != cached:
            problems.append(f"{account}: balance {cached} but its entries sum to {entries_sum}")
        if entries_sum < 0 and not account.startswith("external:"):
            problems.append(f"{account} is below zero: {entries_sum}")
    problems += _check_decisions(session)
    problems += slots.over_issued(session)  # spend on answers beyond the redundancy ordered
    problems += _check_holds(session, derived)
    return problems


def _check_decisions(session: Session) -> list[str]:
    """Every accepted assignment paid exactly once and what it says; no rejected one paid."""
    problems: list[str] = []
    work = (
        select(LedgerTxn.assignment_id, func.count().label("n"))
        .where(LedgerTxn.kind == LedgerKind.WORK)
        .group_by(LedgerTxn.assignment_id)
        .subquery()
    )
    rows = session.execute(
        select(Assignment.id, Assignment.decision, Assignment.paid_cents, func.coalesce(work.c.n, 0))
        .outerjoin(work, work.c.assignment_id == Assignment.id)
        .where(
            or_(
                and_(Assignment.decision == "accepted", Assignment.paid_cents > 0, func.coalesce(work.c.n, 0) != 1),
                and_(Assignment.decision.is_distinct_from("accepted"), func.coalesce(work.c.n, 0) > 0),
            )
        )
        .limit(20)
    ).all()
    problems += [f"assignment {a} ({d}) has {n} payments" for a, d, _, n in rows]
    paid = (
        select(LedgerTxn.assignment_id, func.sum(LedgerEntry.amount).label("cents"))
        .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
        .where(LedgerTxn.kind.in_((LedgerKind.WORK, LedgerKind.BONUS)), LedgerEntry.account.like("worker:%"))
        .group_by(LedgerTxn.assignment_id)
        .subquery()
    )
    wrong = session.execute(
        select(Assignment.id, Assignment.paid_cents, paid.c.cents)
        .join(paid, paid.c.assignment_id == Assignment.id)
        .where(paid.c.cents != func.coalesce(Assignment.paid_cents, 0))
        .limit(20)
    ).all()
    problems += [f"assignment {a} says {p} cents paid but workers got {c}" for a, p, c in wrong]
    return problems


def _check_holds(session: Session, derived: dict[str, Any]) -> list[str]:
    """Each job's holds account carries exactly the holds of its open and undecided work."""
    open_work = or_(Assignment.state == "leased", and_(Assignment.state == "submitted", Assignment.decision.is_(None)))
    held: dict[int, int] = dict(
        session.execute(
            select(Assignment.job_id, func.sum(Assignment.hold_cents)).where(open_work).group_by(Assignment.job_id)
        ).all()
    )
    problems = []
    job_ids = session.execute(select(Job.id)).scalars().all()
    for job_id in job_ids:
        expected, actual = int(held.get(job_id, 0) or 0), int(derived.get(holds_account(job_id), 0))
        if expected != actual:
            problems.append(f"job {job_id}: open work holds {expected} but {holds_account(job_id)} is {actual}")
    return problems
