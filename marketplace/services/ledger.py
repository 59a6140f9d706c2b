"""The double-entry ledger: every movement of money is one `LedgerTxn` whose entries sum to zero,
in integer minor units of one currency. Rows are never changed (database triggers refuse it);
a correction is a new movement.

Accounts are names:

    external:deposits   money that came in from outside (negative: what requesters put in)
    external:payouts    money paid out to workers
    requester:{id}      a requester's funds not given to a job
    job:{id}:budget     what a job may still spend
    job:{id}:holds      worst case of its open leases and of submitted work not yet decided
    worker:{id}         what a worker has earned and not yet been paid

`LedgerBalance` keeps each account's sum, written in the same transaction as the entries, so a
lease can check a budget without summing its history; `check` recomputes all of them from the
entries. Only `external:*` accounts may go below zero: a CHECK constraint refuses the rest.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from marketplace.errors import Conflict
from marketplace.models import Assignment, Job, LedgerBalance, LedgerEntry, LedgerTxn, utcnow

DEPOSITS = "external:deposits"
PAYOUTS = "external:payouts"
Move = tuple[str, str, int]  # from account, to account, amount (> 0)


def requester_account(requester_id: int) -> str:
    return f"requester:{requester_id}"


def budget_account(job_id: int) -> str:
    return f"job:{job_id}:budget"


def holds_account(job_id: int) -> str:
    return f"job:{job_id}:holds"


def worker_account(worker_id: int) -> str:
    return f"worker:{worker_id}"


class InsufficientFunds(Conflict):
    """A movement would take an account below zero; nothing was written."""


def post(
    session: Session,
    kind: str,
    moves: list[Move],
    *,
    currency: str,
    key: str | None = None,
    job_id: int | None = None,
    assignment_id: int | None = None,
    run_id: int | None = None,
    actor_id: int | None = None,
    memo: str = "",
) -> int | None:
    """Write one balanced movement and the balances it changes; its id, or None when `key` was
    used before (the movement happened already: nothing is written). Raises InsufficientFunds
    when an account would go below zero; the caller's transaction stays usable either way."""
    if any(amount < 0 for _, _, amount in moves):
        raise ValueError("amounts move from the first account to the second and are never negative")
    moves = [m for m in moves if m[2] > 0]
    if not moves:
        return None
    if key is not None and session.execute(select(LedgerTxn.id).where(LedgerTxn.key == key)).first():
        return None
    deltas: dict[str, int] = defaultdict(int)
    for source, target, amount in moves:
        deltas[source] -= amount
        deltas[target] += amount
    try:
        with session.begin_nested():
            txn_id = session.execute(
                LedgerTxn.__table__.insert()  # type: ignore[attr-defined]
                .values(
                    kind=kind,
                    key=key,
                    job_id=job_id,
                    assignment_id=assignment_id,
                    run_id=run_id,
                    actor_id=actor_id,
                    memo=memo[:300],
                    created_at=utcnow(),
                )
                .returning(LedgerTxn.id)
            ).scalar_one()
            session.execute(
                LedgerEntry.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {"txn_id": txn_id, "account": account, "amount": amount, "currency": currency}
                    for source, target, value in moves
                    for account, amount in ((source, -value), (target, value))
                ],
            )
            _lock_in_order(session, list(deltas))
            for account in sorted(deltas):
                _add_to_balance(session, account, currency, deltas[account])
    except IntegrityError as error:
        text = str(error.orig)
        if key is not None and "key" in text and "ck_balance_not_negative" not in text:
            return None  # the same movement, posted concurrently under the same key
        if "ck_balance_not_negative" in text or "CHECK constraint failed" in text:
            raise InsufficientFunds("not enough funds for this") from None
        raise
    return int(txn_id)


def _lock_in_order(session: Session, accounts: list[str]) -> None:
    """Lock the balance rows a movement changes in the database's account order, as the lease
    statement does (`pool_pg.LEASE`): concurrent movements then never deadlock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(LedgerBalance.account)
            .where(LedgerBalance.account.in_(accounts))
            .order_by(LedgerBalance.account)
            .with_for_update()
        ).all()


def open_accounts(session: Session, accounts: list[str], currency: str) -> None:
    """Create zero balances for accounts the hot path updates in place (a job's budget and
    holds), so that it never has to insert one."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    rows = [{"account": a, "currency": currency, "balance": 0} for a in accounts]
    session.execute(insert(LedgerBalance).values(rows).on_conflict_do_nothing(index_elements=["account"]))


def _add_to_balance(session: Session, account: str, currency: str, delta: int) -> None:
    """Add `delta` to the kept balance. A debit is an UPDATE: an upsert's proposed row would
    carry the bare delta, which the CHECK refuses before the conflict is seen."""
    if delta < 0:
        changed = session.execute(
            update(LedgerBalance).where(LedgerBalance.account == account).values(balance=LedgerBalance.balance + delta)
        ).rowcount
        if changed:
            return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(LedgerBalance).values(account=account, currency=currency, balance=delta)
    statement = statement.on_conflict_do_update(
        index_elements=["account"], set_={"balance": LedgerBalance.balance + statement.excluded.balance}
    )
    session.execute(statement)


def balance(session: Session, account: str) -> int:
    value = session.execute(select(LedgerBalance.balance).where(LedgerBalance.account == account)).scalar()
    return int(value or 0)


def fund(
    session: Session, requester_id: int, amount: int, currency: str, actor_id: int, key: str | None
) -> dict[str, Any]:
    """Credit a requester from outside (there is no card processor: an operator records it)."""
    scoped = None if key is None else f"fund:{actor_id}:{key}"
    txn_id = post(
        session,
        "fund",
        [(DEPOSITS, requester_account(requester_id), amount)],
        currency=currency,
        key=scoped,
        actor_id=actor_id,
        memo=f"funds for requester {requester_id}",
    )
    if txn_id is None and scoped is not None:  # a retry: answer as the first time
        txn_id = session.execute(select(LedgerTxn.id).where(LedgerTxn.key == scoped)).scalar_one()
    return {
        "transaction_id": txn_id,
        "account_id": requester_id,
        "amount_cents": amount,
        "currency": currency,
        "balance_cents": balance(session, requester_account(requester_id)),
    }


def account_total(session: Session, account: str, kind: str) -> int:
    """The sum of one kind of movement on an account (e.g. a worker's payouts)."""
    total = session.execute(
        select(func.sum(LedgerEntry.amount))
        .join(LedgerTxn, LedgerTxn.id == LedgerEntry.txn_id)
        .where(LedgerEntry.account == account, LedgerTxn.kind == kind)
    ).scalar()
    return int(total or 0)


def history(session: Session, account: str, limit: int = 50) -> list[dict[str, Any]]:
    """The account's latest entries, newest first, with the movement each belongs to."""
    rows = session.execute(
        select(LedgerEntry.amount, LedgerEntry.currency, LedgerTxn)
        .join(LedgerTxn, LedgerTxn.id == LedgerEntry.txn_id)
        .where(LedgerEntry.account == account)
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "transaction_id": txn.id,
            "kind": txn.kind,
            "amount_cents": amount,
            "currency": currency,
            "job_id": txn.job_id,
            "assignment_id": txn.assignment_id,
            "payout_run_id": txn.run_id,
            "memo": txn.memo,
            "at": txn.created_at,
        }
        for amount, currency, txn in rows
    ]


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
    problems += _check_holds(session, derived)
    return problems


def _check_decisions(session: Session) -> list[str]:
    """Every accepted assignment paid exactly once and what it says; no rejected one paid."""
    problems: list[str] = []
    work = (
        select(LedgerTxn.assignment_id, func.count().label("n"))
        .where(LedgerTxn.kind == "work")
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
        .where(LedgerTxn.kind.in_(("work", "bonus")), LedgerEntry.account.like("worker:%"))
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


def totals_by_kind(session: Session, job_id: int, account_prefix: str) -> dict[str, int]:
    """What the job's movements put into accounts starting with `account_prefix`, per kind."""
    rows = session.execute(
        select(LedgerTxn.kind, func.sum(LedgerEntry.amount))
        .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
        .where(LedgerTxn.job_id == job_id, LedgerEntry.account.like(account_prefix + "%"))
        .group_by(LedgerTxn.kind)
    ).all()
    return {kind: int(total) for kind, total in rows}
