"""The ledger has one writer and one lock order.

A lease, an expiry and a decision leave the same ledger rows whichever caller made them (the
lease statement's hold or `ledger.post`, the sweep or a lease that reclaims, the aggregation's
decisions or the sweep's). Balance rows are locked in account order, and a transaction that asks
for one out of order is refused before it can deadlock; leases run against acceptance batches
without a deadlock.
"""

from __future__ import annotations

import collections
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, text, update

from marketplace.db import get_engine, session_scope
from marketplace.models import Account, Assignment, LedgerEntry, LedgerKind, LedgerTxn, utcnow
from marketplace.pool.release import EXPIRY_GRACE, reclaim_apart, reclaim_expired
from marketplace.services import acceptance, ledger, ledger_audit, rules
from marketplace.services.ledger import LockOrderError
from tests.conftest import bearer, new_key, post_job

Headers = dict[str, str]


def _movements(app: Flask, assignment_id: int) -> list[tuple[Any, ...]]:
    """The ledger rows of one assignment, without ids and times: what a caller could change."""
    with session_scope(get_engine(app)) as session:
        txns = session.execute(
            select(LedgerTxn).where(LedgerTxn.assignment_id == assignment_id).order_by(LedgerTxn.id)
        ).scalars()
        rows = []
        for txn in txns:
            entries = session.execute(
                select(LedgerEntry.account, LedgerEntry.amount, LedgerEntry.currency)
                .where(LedgerEntry.txn_id == txn.id)
                .order_by(LedgerEntry.account)
            ).all()
            key = None if txn.key is None else txn.key.replace(str(assignment_id), "#")
            shape = (txn.kind, key, txn.run_id, txn.actor_id, txn.memo)
            rows.append((shape, tuple((_kind_of(a), n, c) for a, n, c in entries)))
        return rows


def _kind_of(account: str) -> str:
    """An account without its ids: `job:7:holds` -> `job:holds`, `worker:3` -> `worker`."""
    parts = account.split(":")
    return ":".join(p for p in parts if not p.isdigit())


def _lease(client: FlaskClient, worker: Headers, job_id: int) -> dict[str, Any]:
    response = client.post("/v1/assignments", json={"job_id": job_id}, headers=worker)
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def _overdue(app: Flask, assignment_id: int) -> None:
    with session_scope(get_engine(app)) as session:
        session.execute(
            update(Assignment)
            .where(Assignment.id == assignment_id)
            .values(expires_at=utcnow() - EXPIRY_GRACE - timedelta(seconds=5))
        )


def test_a_lease_leaves_the_same_ledger_rows_whichever_path_made_it(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = post_job(client, requester, items=40, golden=10, overlap=1, golden_ratio=0.0, items_per_task=3)
    qualified = post_job(
        client,
        requester,
        items=40,
        golden=10,
        overlap=1,
        golden_ratio=0.0,
        items_per_task=3,
        qualification={"items": 3, "pass_mark": 0.5},
    )
    leases = []
    for hot in (True, False):  # the middleware's short way, and the Flask view
        app.config["HOT_PATH"] = hot
        leases.append(_lease(client, bearer(new_key(app, "worker")), job["id"]))
    test = _lease(client, bearer(new_key(app, "worker")), qualified["id"])  # a test: held by `ledger.post`
    assert test["kind"] == "qualification" and len(test["items"]) == 3
    shapes = [_movements(app, lease["id"]) for lease in leases]
    assert shapes[0] == shapes[1] and shapes[0][0][0][0] == "hold"
    (test_shape,) = _movements(app, test["id"])
    assert test_shape[1] == shapes[0][0][1]  # the same entries: budget -> holds, the same amount
    assert test_shape[0][:2] == shapes[0][0][0][:2] and test_shape[0][3:] == shapes[0][0][0][3:]


def test_an_expiry_leaves_the_same_ledger_rows_whichever_caller_reclaimed_it(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = post_job(client, requester, items=12, golden=0, overlap=1, golden_ratio=0.0, items_per_task=3)
    first, second = (_lease(client, bearer(new_key(app, "worker")), job["id"]) for _ in range(2))
    for lease in (first, second):
        _overdue(app, lease["id"])
    with session_scope(get_engine(app)) as session:  # the sweep's way
        swept = session.execute(select(Assignment).where(Assignment.id == first["id"])).scalar_one()
        assert reclaim_expired(session, job["id"], utcnow(), limit=1) == 1 and swept.id == first["id"]
    assert reclaim_apart(get_engine(app), job["id"], utcnow()) == 1  # a lease's way, when the pool ran dry
    assert _movements(app, first["id"]) == _movements(app, second["id"])
    assert [shape[0][0] for shape in _movements(app, first["id"])] == ["hold", "release"]


def _submitted_task(app: Flask, client: FlaskClient, requester: Headers) -> tuple[int, int]:
    """(job id, assignment id) of one submitted task on a fresh paid job."""
    job = post_job(
        client,
        requester,
        items=3,
        golden=0,
        overlap=1,
        golden_ratio=0.0,
        items_per_task=3,
        acceptance={"auto_accept_seconds": 60},
    )
    worker = bearer(new_key(app, "worker"))
    lease = _lease(client, worker, job["id"])
    answers = [{"item_id": i["id"], "label": "cat"} for i in lease["items"]]
    done = client.post(f"/v1/assignments/{lease['id']}/submit", json={"answers": answers}, headers=worker)
    assert done.status_code == 200
    return job["id"], lease["id"]


def test_a_decision_leaves_the_same_ledger_rows_whichever_job_made_it(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    (first_job, first), (_, second) = (_submitted_task(app, client, requester) for _ in range(2))
    later = utcnow() + timedelta(minutes=5)  # past the auto-accept delay, not aggregated
    with session_scope(get_engine(app)) as session:  # the aggregation job's call, for the first job
        assert acceptance.decide_job(session, first_job, acceptance.Limits(), later)["accepted"] == 1
    with session_scope(get_engine(app)) as session:  # the sweep's call, for every job
        assert sum(c["accepted"] for c in acceptance.decide_overdue(session, acceptance.Limits(), later).values()) == 1
    assert _movements(app, first) == _movements(app, second)
    assert [shape[0][0] for shape in _movements(app, first)] == ["hold", "work"]  # the hold, all paid


def test_balance_rows_are_locked_in_one_order(app: Flask, client: FlaskClient, requester: Headers) -> None:
    post_job(client, requester, items=3, golden=0)
    with session_scope(get_engine(app)) as session:
        ledger.lock_balances(session, ["job:1:holds", "worker:9"])
        ledger.lock_balances(session, ["worker:9", "worker:90"])  # held, or after every held row
        with pytest.raises(LockOrderError):
            ledger.lock_balances(session, ["job:1:budget"])  # sorts before one already held
    with session_scope(get_engine(app)) as session:  # a new transaction starts with nothing held
        ledger.lock_balances(session, ["job:1:budget"])


def test_leases_and_acceptance_batches_never_deadlock(app: Flask, client: FlaskClient, requester: Headers) -> None:
    """Workers lease and submit on a paid job while acceptance batches settle its work, each
    moving the job's budget and holds rows: no deadlock, no failed lease, the ledger sound."""
    job = post_job(client, requester, items=300, golden=0, overlap=2, golden_ratio=0.0, items_per_task=2)
    workers = [bearer(new_key(app, "worker", f"w{n}")) for n in range(8)]
    errors: list[str] = []
    stop = threading.Event()

    def crowd(worker: Headers) -> None:
        own = app.test_client()
        for _ in range(40):
            lease = own.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)
            if lease.status_code == 204:
                return
            if lease.status_code != 201:
                errors.append(f"lease {lease.status_code} {lease.get_json()}")
                return
            task = lease.get_json()
            answers = [{"item_id": i["id"], "label": "cat"} for i in task["items"]]
            done = own.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker)
            if done.status_code != 200:
                errors.append(f"submit {done.status_code}")

    def decide() -> None:
        later = utcnow() + timedelta(days=30)  # everything submitted is overdue: auto-accepted
        while not stop.is_set():
            try:
                with session_scope(get_engine(app)) as session:
                    acceptance.decide_job(session, job["id"], acceptance.Limits(), later, only_overdue=True)
            except Exception as error:  # noqa: BLE001 - any failure is the finding
                errors.append(f"decide {type(error).__name__}: {error}")
                return

    threads = [threading.Thread(target=crowd, args=(w,)) for w in workers]
    decider = threading.Thread(target=decide)
    decider.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    decider.join()
    assert errors == []
    with session_scope(get_engine(app)) as session:
        assert acceptance.decide_job(session, job["id"], acceptance.Limits(), utcnow() + timedelta(days=30))
        assert ledger_audit.check(session) == []
        decided = session.execute(select(Assignment.decision).where(Assignment.job_id == job["id"])).scalars().all()
    assert decided and all(d == "accepted" for d in decided)


def test_a_rules_pass_banning_two_workers_never_holds_balance_rows_while_it_waits_for_an_account(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    """A lease locks the worker's account, then the job's balance rows. A rules pass that
    bans two workers must not hold the balance rows (taken by the first ban, which revoked an
    open lease) while it waits for the second worker's account: it would deadlock with that
    worker's lease (two RQ workers beside the API hit it under load). Here a transaction
    stands in for the second worker's lease: it holds the account while the pass waits for it,
    then must get the balance rows without waiting."""
    job = post_job(client, requester, items=40, golden=20, overlap=2, golden_ratio=0.5, items_per_task=4)
    first, second = (bearer(new_key(app, "worker", name)) for name in ("liar-a", "liar-b"))
    for worker in (first, second):
        for _ in range(4):  # golden answers are 'cat': every one of these is wrong
            task = _lease(client, worker, job["id"])
            answers = [{"item_id": i["id"], "label": "dog"} for i in task["items"]]
            done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker)
            assert done.status_code == 200, done.get_json()
    _lease(client, first, job["id"])  # left open: banning the first worker revokes it
    first_id, second_id = (client.get("/v1/me", headers=w).get_json()["id"] for w in (first, second))
    assert first_id < second_id  # the pass bans in worker order
    balances = [ledger.budget_account(job["id"]), ledger.holds_account(job["id"])]
    engine = get_engine(app)
    fired: list[Any] = []
    with engine.connect() as lease_stand_in:
        lease_stand_in.execute(select(Account.id).where(Account.id == second_id).with_for_update())
        rules_pass = threading.Thread(target=lambda: fired.extend(_apply_rules(app, job["id"])))
        rules_pass.start()
        _wait_for_a_lock_wait(engine)  # the pass banned the first worker and waits for the second
        rows = lease_stand_in.execute(
            text("SELECT account FROM ledgerbalance WHERE account = ANY(:a) ORDER BY account FOR UPDATE NOWAIT"),
            {"a": balances},
        ).all()
        assert len(rows) == 2
        lease_stand_in.rollback()
    rules_pass.join(timeout=30)
    assert sorted(f["worker_id"] for f in fired) == [first_id, second_id]
    with session_scope(engine) as session:
        assert ledger_audit.check(session) == []


def _apply_rules(app: Flask, job_id: int) -> list[dict[str, Any]]:
    with session_scope(get_engine(app)) as session:
        return rules.apply_rules(session, job_id)


def _wait_for_a_lock_wait(engine: Any) -> None:
    for _ in range(300):
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError("nothing waited on a lock")


def _count_statements(app: Flask) -> tuple[list[str], Any]:
    """A list that every statement run on the app's engine is appended to, and the listener."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(get_engine(app), "before_cursor_execute", count)
    return seen, count


def test_a_batch_of_movements_is_a_few_statements_and_all_or_nothing(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    """`post_all` writes any number of movements in the same few statements (the acceptance
    batch posts three a task while it holds the job's money rows); a key used before moves
    nothing again; a movement that would overdraw an account writes none of them."""
    job = post_job(client, requester, items=3, golden=0)
    budget, holds = ledger.budget_account(job["id"]), ledger.holds_account(job["id"])

    def batch(first: int, count: int, cents: int = 1) -> list[ledger.Movement]:
        return [
            ledger.Movement(LedgerKind.RELEASE, [(budget, f"worker:{900 + n}", cents)], key=f"t:{n}")
            for n in range(first, first + count)
        ]

    statements = {}
    for size in (3, 60):
        seen, listener = _count_statements(app)
        try:
            with session_scope(get_engine(app)) as session:
                ids = ledger.post_all(session, batch(1000 * size, size), currency="USD")
        finally:
            event.remove(get_engine(app), "before_cursor_execute", listener)
        assert len(ids) == size and all(ids)
        statements[size] = len(seen)
    assert statements[60] == statements[3] <= 10, statements
    with session_scope(get_engine(app)) as session:
        before = ledger.balance(session, budget)
        ids = ledger.post_all(session, batch(3000, 4), currency="USD")  # two keys used by the 3-batch above
    assert [i is None for i in ids] == [True, True, True, False]
    with session_scope(get_engine(app)) as session:
        assert ledger.balance(session, budget) == before - 1
        with pytest.raises(ledger.InsufficientFunds):
            ledger.post_all(session, [*batch(5000, 2), *batch(5002, 1, cents=before + 1)], currency="USD")
        assert ledger.balance(session, budget) == before - 1
        assert session.execute(select(LedgerTxn.id).where(LedgerTxn.key.like("t:500%"))).first() is None
        assert ledger.balance(session, holds) >= 0 and ledger_audit.check(session) == []


def test_two_batches_with_shared_keys_at_once_post_each_key_once(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    """The second batch reads its keys as unused, then waits for the balance rows the first
    holds; when the first commits, its insert meets the first's keys and it posts one by one,
    each movement skipping a key that is now taken."""
    job = post_job(client, requester, items=3, golden=0)
    budget = ledger.budget_account(job["id"])

    def batch(keys: range) -> list[ledger.Movement]:
        return [ledger.Movement(LedgerKind.RELEASE, [(budget, "worker:77", 1)], key=f"shared:{n}") for n in keys]

    engine = get_engine(app)
    second_ids: list[int | None] = []
    errors: list[str] = []

    def second() -> None:
        try:
            with session_scope(engine) as session:
                second_ids.extend(ledger.post_all(session, batch(range(5, 15)), currency="USD"))
        except Exception as error:  # noqa: BLE001 - any failure is the finding
            errors.append(f"{type(error).__name__}: {error}")

    with session_scope(engine) as session:
        before = ledger.balance(session, budget)
    with session_scope(engine) as session:
        assert all(ledger.post_all(session, batch(range(10)), currency="USD"))
        thread = threading.Thread(target=second)
        thread.start()
        _wait_for_a_lock_wait(engine)  # the second batch waits for the balance rows
    thread.join(timeout=30)
    assert errors == [] and not thread.is_alive()
    assert [i is None for i in second_ids] == [True] * 5 + [False] * 5
    with session_scope(engine) as session:
        keys = session.execute(select(LedgerTxn.key).where(LedgerTxn.key.like("shared:%"))).scalars().all()
        assert sorted(keys) == sorted(f"shared:{n}" for n in range(15))
        assert ledger.balance(session, budget) == before - 15
        assert ledger.balance(session, "worker:77") == 15
        assert ledger_audit.check(session) == []


def test_a_decision_batch_is_a_few_statements_whatever_its_size(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    """Deciding a batch of tasks writes its decisions and money in statements that do not grow
    with the batch (16 a task before: a lease of the job waited ~0.5 s on each batch)."""
    job = post_job(client, requester, items=120, golden=0, overlap=1, golden_ratio=0.0, items_per_task=2)
    workers = [bearer(new_key(app, "worker", f"w{n}")) for n in range(6)]
    submitted = 0
    for n in range(60):
        task = _lease(client, workers[n % len(workers)], job["id"])
        answers = [{"item_id": i["id"], "label": "cat"} for i in task["items"]]
        done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=workers[n % 6])
        assert done.status_code == 200
        submitted += 1
    seen, listener = _count_statements(app)
    try:
        with session_scope(get_engine(app)) as session:
            counts = acceptance.decide_job(session, job["id"], acceptance.Limits(), utcnow() + timedelta(days=30))
    finally:
        event.remove(get_engine(app), "before_cursor_execute", listener)
    assert counts["accepted"] == submitted == 60
    batches = -(-submitted // acceptance.BATCH)
    assert len(seen) <= 20 * batches, len(seen)  # 554 statements for these 60 tasks one by one
    with session_scope(get_engine(app)) as session:
        assert ledger_audit.check(session) == []
        paid = session.execute(select(Assignment.paid_cents).where(Assignment.job_id == job["id"])).scalars().all()
    assert len(paid) == 60 and all(p and p > 0 for p in paid)


def test_decision_runs_at_once_decide_and_pay_each_task_once(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    """Four decision runs of one job start together (the aggregation's and the sweep's can):
    between them every task is decided once and paid once, and the ledger is sound."""
    job = post_job(client, requester, items=240, golden=0, overlap=1, golden_ratio=0.0, items_per_task=2)
    workers = [bearer(new_key(app, "worker", f"w{n}")) for n in range(6)]
    for n in range(120):
        worker = workers[n % len(workers)]
        task = _lease(client, worker, job["id"])
        answers = [{"item_id": i["id"], "label": "cat"} for i in task["items"]]
        done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker)
        assert done.status_code == 200
    later = utcnow() + timedelta(days=30)
    start = threading.Barrier(4)
    counts: list[dict[str, int]] = []
    errors: list[str] = []

    def run() -> None:
        try:
            start.wait()
            with session_scope(get_engine(app)) as session:
                counts.append(acceptance.decide_job(session, job["id"], acceptance.Limits(), later))
        except Exception as error:  # noqa: BLE001 - any failure is the finding
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with session_scope(get_engine(app)) as session:  # whatever a run left when it found another deciding
        counts.append(acceptance.decide_job(session, job["id"], acceptance.Limits(), later))
        assert ledger_audit.check(session) == []
        work = session.execute(
            select(LedgerTxn.assignment_id).where(LedgerTxn.job_id == job["id"], LedgerTxn.kind == LedgerKind.WORK)
        ).scalars()
        paid = session.execute(select(Assignment.paid_cents).where(Assignment.job_id == job["id"])).scalars().all()
    assert sum(c["accepted"] for c in counts) == 120
    assert sorted(collections.Counter(work).values()) == [1] * 120
    assert len(paid) == 120 and all(p and p > 0 for p in paid)
