"""Payout runs: each worker's earned balance moved to `external:payouts`, once per run.

At most one run is open at a time (`PayoutRun.open` is unique): two runs started at once are
one run. A run pays worker by worker, each in a transaction of its own under the key
`payout:{run}:{worker}`, so a run killed half-way and started again pays the rest and nobody
twice. The file a payment provider takes is read back from the run's ledger movements.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import BigInteger, Engine, cast, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from marketplace.errors import NotFound
from marketplace.models import (
    Account,
    LedgerBalance,
    LedgerEntry,
    LedgerKind,
    LedgerTxn,
    PayoutRun,
    PayoutState,
    utcnow,
)
from marketplace.services import ledger


def start_run(session: Session, actor_id: int, currency: str, key: str | None) -> tuple[PayoutRun, bool]:
    """The open run (or the one this key started), else a new one; (run, created)."""
    if key is not None:
        known = session.execute(select(PayoutRun).where(PayoutRun.key == key)).scalar_one_or_none()
        if known is not None:
            return known, False
    current = _open_run(session)
    if current is not None:
        return current, False
    try:
        with session.begin_nested():
            run = PayoutRun(key=key, created_by=actor_id, currency=currency, open=True, state=PayoutState.PENDING)
            session.add(run)
            session.flush()
    except IntegrityError:  # another request opened one at the same moment
        current = _open_run(session)
        assert current is not None
        return current, False
    return run, True


def _open_run(session: Session) -> PayoutRun | None:
    return session.execute(select(PayoutRun).where(PayoutRun.open.is_(True))).scalar_one_or_none()


def execute_run(engine: Engine, run_id: int) -> dict[str, Any]:
    """Pay every worker with a positive balance that this run has not paid yet, then close it."""
    with Session(engine, expire_on_commit=False) as session:
        run = session.get(PayoutRun, run_id)
        if run is None:
            raise NotFound(f"payout run {run_id} not found")
        if run.state == PayoutState.DONE:
            return summary(session, run)
        owed = session.execute(
            select(LedgerBalance.account)
            .where(LedgerBalance.account.like("worker:%"), LedgerBalance.balance > 0)
            .order_by(LedgerBalance.account)
        ).scalars()
        accounts = list(owed)
    for account in accounts:
        with Session(engine, expire_on_commit=False) as session:
            _pay_one(session, run, account)
            session.commit()
    with Session(engine, expire_on_commit=False) as session:
        total, workers = _run_totals(session, run_id)
        session.execute(
            update(PayoutRun)
            .where(PayoutRun.id == run_id, PayoutRun.state != PayoutState.DONE)
            .values(state=PayoutState.DONE, open=None, finished_at=utcnow(), total_cents=total, workers=workers)
        )
        session.commit()
        done = session.get(PayoutRun, run_id)
        assert done is not None
        return summary(session, done)


def _pay_one(session: Session, run: PayoutRun, account: str) -> None:
    """Move the worker's whole balance out, reading it under the row locks: an acceptance that
    commits meanwhile waits, and is paid by the next run."""
    ledger.lock_balances(session, [account, ledger.PAYOUTS])
    current = ledger.balance(session, account)
    worker_id = int(account.split(":", 1)[1])
    ledger.post(
        session,
        LedgerKind.PAYOUT,
        [(account, ledger.PAYOUTS, int(current or 0))],
        currency=run.currency,
        key=f"payout:{run.id}:{worker_id}",
        run_id=run.id,
        memo=f"payout run {run.id}",
    )


def _run_totals(session: Session, run_id: int) -> tuple[int, int]:
    lines = run_lines(session, run_id)
    return sum(line["amount_cents"] for line in lines), len(lines)


def run_lines(session: Session, run_id: int) -> list[dict[str, Any]]:
    """One line per worker paid by the run: what a payment provider needs."""
    rows = session.execute(
        select(LedgerTxn.id, LedgerEntry.account, LedgerEntry.amount, LedgerEntry.currency, Account.name)
        .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
        .outerjoin(Account, Account.id == _worker_id_of(LedgerEntry.account))
        .where(LedgerTxn.run_id == run_id, LedgerTxn.kind == LedgerKind.PAYOUT, LedgerEntry.account != ledger.PAYOUTS)
        .order_by(LedgerEntry.account)
    ).all()
    return [
        {
            "worker_id": int(account.split(":", 1)[1]),
            "worker_name": name,
            "amount_cents": -amount,
            "currency": currency,
            "reference": f"run-{run_id}-txn-{txn_id}",
        }
        for txn_id, account, amount, currency, name in rows
    ]


def _worker_id_of(account: Any) -> Any:
    return cast(func.substr(account, len("worker:") + 1), BigInteger)


def summary(session: Session, run: PayoutRun) -> dict[str, Any]:
    total, workers = (run.total_cents, run.workers) if run.state == PayoutState.DONE else _run_totals(session, run.id)
    return {
        "id": run.id,
        "state": run.state,
        "currency": run.currency,
        "workers": workers,
        "total_cents": total,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }


def get_run(session: Session, run_id: int) -> PayoutRun:
    run = session.get(PayoutRun, run_id)
    if run is None:
        raise NotFound(f"payout run {run_id} not found")
    return run


def payout_csv(lines: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["worker_id", "worker_name", "amount_cents", "currency", "reference"])
    writer.writeheader()
    writer.writerows(lines)
    return out.getvalue()
