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
lease can check a budget without summing its history; `ledger_audit.check` recomputes all of
them from the entries. Only `external:*` accounts may go below zero: a CHECK constraint refuses
the rest.

This module is the one writer of ledger rows: `post_all` for every movement (`post` for one),
and `LEASE_HOLD`, the SQL that the lease statement (`pool/lease.py`) runs to hold a task's worst
case in the same statement. Balance rows are locked in one order everywhere, account name order, and a
transaction takes them before its first movement (`lock_balances`): a transaction that asks
for a row sorting below one it already holds is refused (`LockOrderError`), so two movements
can never wait on each other in opposite orders (a lease locks the job's budget then its
holds; the acceptance batch once took the holds first, and deadlocked with it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from marketplace.errors import Conflict
from marketplace.models import LedgerBalance, LedgerEntry, LedgerKind, LedgerTxn, utcnow

DEPOSITS = "external:deposits"
KEY_CONSTRAINT = "ledgertxn_key_key"  # UNIQUE (key): a movement happens once
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


class LockOrderError(RuntimeError):
    """A transaction asked for a balance row below one it holds: a deadlock waiting to happen."""


_LOCKED = "marketplace.ledger_locked"


def lock_balances(session: Session, accounts: Iterable[str]) -> None:
    """Lock the balance rows of `accounts` for this transaction, in account order (rows not yet
    created are locked by their first insert). Call it once, before the transaction's first
    movement, with every account the transaction will change; later calls may only add
    accounts that sort after every account already held."""
    held: set[str] = session.info.setdefault(_LOCKED, set())
    wanted = sorted(set(accounts) - held)
    if not wanted:
        return
    if held and wanted[0] < max(held):
        raise LockOrderError(f"{wanted[0]} after {max(held)}: lock every account up front with lock_balances")
    session.execute(
        select(LedgerBalance.account)
        .where(LedgerBalance.account.in_(wanted))
        .order_by(LedgerBalance.account)
        .with_for_update()
    ).all()
    held.update(wanted)


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outer transaction: its row locks are gone
        session.info.pop(_LOCKED, None)


# The lease's hold, as CTEs for the lease statement (`pool/lease.py`): it expects a CTE `a` (the
# new assignment: id, job_id, hold_cents) and `go` (the job's currency), and the parameters
# `now`, `budget` and `holds` (the job's two accounts). The two balance rows are locked in
# account order (budget < holds), as `lock_balances` does.
LEASE_HOLD = """
hold AS (
    INSERT INTO ledgertxn (kind, job_id, assignment_id, memo, created_at)
    SELECT 'hold', a.job_id, a.id, '', %(now)s FROM a WHERE a.hold_cents > 0
    RETURNING id
), hold_entries AS (
    INSERT INTO ledgerentry (txn_id, account, amount, currency)
    SELECT hold.id, m.account, m.amount, go.currency
    FROM hold, a, go,
         LATERAL (VALUES (%(budget)s::varchar, -a.hold_cents::bigint), (%(holds)s::varchar, a.hold_cents::bigint))
             AS m(account, amount)
), locked AS (
    SELECT account FROM ledgerbalance
    WHERE account IN (%(budget)s, %(holds)s) AND EXISTS (SELECT 1 FROM a WHERE a.hold_cents > 0)
    ORDER BY account
    FOR UPDATE
), balances AS (  -- below zero under a race: the balance CHECK fails the whole lease
    UPDATE ledgerbalance b
    SET balance = b.balance + CASE WHEN b.account = %(budget)s THEN -a.hold_cents ELSE a.hold_cents END
    FROM a
    WHERE b.account IN (SELECT account FROM locked) AND a.hold_cents > 0
)"""


@dataclass(frozen=True)
class Movement:
    """One balanced movement to write: money moves from each first account to its second."""

    kind: LedgerKind
    moves: list[Move]
    key: str | None = None
    job_id: int | None = None
    assignment_id: int | None = None
    run_id: int | None = None
    actor_id: int | None = None
    memo: str = ""


def post(
    session: Session,
    kind: LedgerKind,
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
    movement = Movement(kind, moves, key, job_id, assignment_id, run_id, actor_id, memo)
    return post_all(session, [movement], currency=currency)[0]


def post_all(session: Session, movements: list[Movement], *, currency: str) -> list[int | None]:
    """Write movements together in a handful of statements, whatever their number (the
    acceptance batch posts three a task while it holds the job's money rows); each one's id, or
    None when it moved nothing (no amount, or its key used before). All or nothing: raises
    InsufficientFunds when an account would go below zero, with nothing written."""
    if any(amount < 0 for m in movements for _, _, amount in m.moves):
        raise ValueError("amounts move from the first account to the second and are never negative")
    keys = [m.key for m in movements if m.key is not None]
    if len(set(keys)) < len(keys):
        raise ValueError("two movements of one call share a key")
    used = set(session.execute(select(LedgerTxn.key).where(LedgerTxn.key.in_(keys))).scalars()) if keys else set()
    moving = [(n, replace(m, moves=[move for move in m.moves if move[2] > 0])) for n, m in enumerate(movements)]
    fresh = [(n, m) for n, m in moving if m.moves and m.key not in used]
    ids: list[int | None] = [None] * len(movements)
    if not fresh:
        return ids
    deltas: dict[str, int] = defaultdict(int)
    for _, m in fresh:
        for source, target, amount in m.moves:
            deltas[source] -= amount
            deltas[target] += amount
    lock_balances(session, deltas)  # in the caller's transaction, not the savepoint below
    try:
        with session.begin_nested():
            new_ids = _write(session, [m for _, m in fresh], currency)
            _add_to_balances(session, deltas, currency)
    except IntegrityError as error:
        constraint = str(getattr(getattr(error.orig, "diag", None), "constraint_name", None))
        if "ck_balance_not_negative" in constraint:
            raise InsufficientFunds("not enough funds for this") from None
        if constraint != KEY_CONSTRAINT:
            raise
        if len(fresh) > 1:  # another transaction posted one of these keys since they were read
            return [post_all(session, [m], currency=currency)[0] if m.key not in used else None for m in movements]
        return ids  # the same movement, posted concurrently under the same key
    for (n, _), txn_id in zip(fresh, new_ids, strict=True):
        ids[n] = txn_id
    return ids


def _write(session: Session, movements: list[Movement], currency: str) -> list[int]:
    """The movements' rows and entries in three statements; their ids, in order (taken from the
    sequence first, so that each entry knows its movement)."""
    ids = list(
        session.execute(
            text("SELECT nextval(pg_get_serial_sequence('ledgertxn', 'id')) FROM generate_series(1, :n)"),
            {"n": len(movements)},
        ).scalars()
    )
    now = utcnow()
    session.execute(
        LedgerTxn.__table__.insert(),  # type: ignore[attr-defined]
        [
            {
                "id": txn_id,
                "kind": m.kind,
                "key": m.key,
                "job_id": m.job_id,
                "assignment_id": m.assignment_id,
                "run_id": m.run_id,
                "actor_id": m.actor_id,
                "memo": m.memo[:300],
                "created_at": now,
            }
            for txn_id, m in zip(ids, movements, strict=True)
        ],
    )
    session.execute(
        LedgerEntry.__table__.insert(),  # type: ignore[attr-defined]
        [
            {"txn_id": txn_id, "account": account, "amount": amount, "currency": currency}
            for txn_id, m in zip(ids, movements, strict=True)
            for source, target, value in m.moves
            for account, amount in ((source, -value), (target, value))
        ],
    )
    return [int(i) for i in ids]


def open_accounts(session: Session, accounts: list[str], currency: str) -> None:
    """Create zero balances for accounts the hot path updates in place (a job's budget and
    holds), so that it never has to insert one."""
    session.execute(
        text(
            "INSERT INTO ledgerbalance (account, currency, balance) "
            "SELECT a, :currency, 0 FROM unnest(CAST(:accounts AS varchar[])) AS a ON CONFLICT (account) DO NOTHING"
        ),
        {"accounts": list(accounts), "currency": currency},
    )


def _add_to_balances(session: Session, deltas: dict[str, int], currency: str) -> None:
    """Add each delta to its kept balance: one UPDATE for the rows that exist, one insert for
    the rest. A debit of a missing row is inserted with its bare (negative) delta, which the
    CHECK refuses unless the account is external: an upsert could not tell the two apart."""
    accounts = sorted(a for a, d in deltas.items() if d != 0)
    if not accounts:
        return
    updated = set(
        session.execute(
            text(
                "UPDATE ledgerbalance b SET balance = b.balance + d.delta "
                "FROM unnest(CAST(:accounts AS varchar[]), CAST(:deltas AS bigint[])) AS d(account, delta) "
                "WHERE b.account = d.account RETURNING b.account"
            ),
            {"accounts": accounts, "deltas": [deltas[a] for a in accounts]},
        ).scalars()
    )
    missing = [a for a in accounts if a not in updated]
    if missing:
        session.execute(
            text(
                "INSERT INTO ledgerbalance (account, currency, balance) "
                "SELECT d.account, :currency, d.delta "
                "FROM unnest(CAST(:accounts AS varchar[]), CAST(:deltas AS bigint[])) AS d(account, delta) "
                "ON CONFLICT (account) DO UPDATE SET balance = ledgerbalance.balance + EXCLUDED.balance"
            ),
            {"accounts": missing, "deltas": [deltas[a] for a in missing], "currency": currency},
        )


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
        LedgerKind.FUND,
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


def totals_by_kind(session: Session, job_id: int, account_prefix: str) -> dict[str, int]:
    """What the job's movements put into accounts starting with `account_prefix`, per kind."""
    rows = session.execute(
        select(LedgerTxn.kind, func.sum(LedgerEntry.amount))
        .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
        .where(LedgerTxn.job_id == job_id, LedgerEntry.account.like(account_prefix + "%"))
        .group_by(LedgerTxn.kind)
    ).all()
    return {kind: int(total) for kind, total in rows}
