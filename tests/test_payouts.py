"""Payout runs on PostgreSQL: a run killed half-way and started again pays everybody exactly
once; two runs started at once are one run; retried requests move money once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import Engine, func, insert, select

from marketplace import queue
from marketplace.db import dispose, get_engine, session_scope
from marketplace.models import Account, LedgerBalance, LedgerEntry, LedgerTxn, PayoutRun
from marketplace.services import ledger, ledger_audit, payouts
from tests.conftest import REDIS_URL, bearer, make_app, new_key

Headers = dict[str, str]


@pytest.fixture
def queue_name() -> str:
    return f"payouts-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app(database_url: str, redis: Redis, queue_name: str) -> Iterator[Flask]:
    """PostgreSQL, Redis db of the tests, and a queue of its own (no other worker takes its jobs)."""
    application = make_app(database_url, QUEUE_NAME=queue_name)
    yield application
    dispose(application)


@pytest.fixture
def operator(app: Flask) -> Headers:
    return bearer(new_key(app, "operator", "op"))


def _workers_with_balances(engine: Engine, count: int) -> dict[str, int]:
    """`count` workers, each credited a different positive amount (one adjustment movement)."""
    with session_scope(engine) as session:
        ids = session.execute(
            insert(Account).returning(Account.id),
            [
                {"role": "worker", "name": f"w{i}", "key_hash": uuid.uuid4().hex, "status": "active"}
                for i in range(count)
            ],
        ).scalars()
        owed = {ledger.worker_account(worker_id): 1 + (i % 97) for i, worker_id in enumerate(ids)}
        ledger.post(
            session,
            "adjustment",
            [(ledger.DEPOSITS, account, cents) for account, cents in owed.items()],
            currency="USD",
            memo="earned elsewhere",
        )
    return owed


def _payouts_of(engine: Engine, run_id: int | None = None) -> dict[str, list[int]]:
    """Per worker account, the amounts of every payout movement (of one run, or of all)."""
    query = (
        select(LedgerEntry.account, LedgerEntry.amount)
        .join(LedgerTxn, LedgerTxn.id == LedgerEntry.txn_id)
        .where(LedgerTxn.kind == "payout", LedgerEntry.account.like("worker:%"))
    )
    if run_id is not None:
        query = query.where(LedgerTxn.run_id == run_id)
    paid: dict[str, list[int]] = {}
    with session_scope(engine) as session:
        for account, amount in session.execute(query):
            paid.setdefault(account, []).append(-amount)
    return paid


def _count(engine: Engine, query: Any) -> int:
    with session_scope(engine) as session:
        return int(session.execute(query).scalar_one())


def _assert_paid_exactly_once(engine: Engine, run_id: int, owed: dict[str, int]) -> None:
    paid = _payouts_of(engine)
    assert {a: p for a, p in paid.items() if len(p) != 1} == {}, "a worker was paid more than once"
    assert {a: p[0] for a, p in paid.items()} == owed
    assert _payouts_of(engine, run_id) == {a: [c] for a, c in owed.items()}
    with session_scope(engine) as session:
        left = session.execute(
            select(func.count()).where(LedgerBalance.account.like("worker:%"), LedgerBalance.balance != 0)
        ).scalar_one()
        assert left == 0
        assert ledger.balance(session, ledger.PAYOUTS) == sum(owed.values())
        run = session.get(PayoutRun, run_id)
        assert run is not None and run.state == "done" and run.open is None
        assert (run.total_cents, run.workers) == (sum(owed.values()), len(owed))
        assert ledger_audit.check(session) == []


def _wait(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _start_worker(database_url: str, queue_name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
    env.update(DATABASE_URL=database_url, REDIS_URL=REDIS_URL, MARKETPLACE_QUEUE_NAME=queue_name)
    return subprocess.Popen(
        [sys.executable, "-m", "marketplace", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the work horse too
    )


def _descendants(pid: int) -> list[int]:
    """Child processes, recursively (from /proc: RQ's work horse leaves our process group)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker, its process group and its work horse (which runs in a group of its own)."""
    if process.poll() is None:
        horses = _descendants(process.pid)
        os.killpg(process.pid, signal.SIGKILL)
        for pid in horses:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_a_killed_run_started_again_pays_every_worker_exactly_once(
    app: Flask, operator: Headers, database_url: str, queue_name: str
) -> None:
    engine = get_engine(app)
    owed = _workers_with_balances(engine, 1500)
    client = app.test_client()
    paid_so_far = select(func.count()).select_from(LedgerTxn).where(LedgerTxn.kind == "payout")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        workers.append(_start_worker(database_url, queue_name))
        started = client.post("/v1/payouts/runs", headers=operator)
        assert started.status_code == 201, started.get_json()
        run_id = started.get_json()["id"]
        _wait(lambda: _count(engine, paid_so_far) >= 50, 60, "the worker to start paying", every=0.01)
        _kill(workers[0])
        partial = _count(engine, paid_so_far)
        assert 0 < partial < len(owed), "the kill did not land half-way"
        time.sleep(0.5)
        assert _count(engine, paid_so_far) == partial, "payments went on after the kill"
        with session_scope(engine) as session:
            run = session.get(PayoutRun, run_id)
            assert run is not None and run.state == "pending" and run.open is True

        workers.append(_start_worker(database_url, queue_name))
        again = client.post("/v1/payouts/runs", headers=operator)
        assert again.status_code == 200, again.get_json()
        assert again.get_json()["id"] == run_id
        assert again.get_json()["state"] != "done"

        def done() -> bool:
            with session_scope(engine) as session:
                return session.execute(select(PayoutRun.state).where(PayoutRun.id == run_id)).scalar_one() == "done"

        _wait(done, 120, "the resumed run to finish", every=0.2)
    finally:
        for process in workers:
            _kill(process)
    _assert_paid_exactly_once(engine, run_id, owed)
    assert _count(engine, select(func.count()).select_from(PayoutRun)) == 1
    shown = client.get(f"/v1/payouts/runs/{run_id}", headers=operator).get_json()
    assert shown["state"] == "done" and shown["total_cents"] == sum(owed.values())
    assert len(shown["lines"]) == len(owed)


def test_an_open_run_is_enqueued_again_when_its_job_was_lost_but_its_guard_was_not(
    app: Flask, operator: Headers, redis: Redis
) -> None:
    """A job lost before `run_payouts` started (its horse killed while starting, or Redis lost the
    queue) leaves the enqueue guard behind: starting the run again must still put it on the
    queue, as the endpoint promises ("returns that one (and resumes it)")."""
    engine = get_engine(app)
    _workers_with_balances(engine, 3)
    client = app.test_client()
    first = client.post("/v1/payouts/runs", headers=operator)
    assert first.status_code == 201
    run_id = first.get_json()["id"]
    guard = queue.guard_key(queue.PAYOUT_JOB, run_id)
    assert redis.exists(guard)
    queue.get_queue(redis, app.config["QUEUE_NAME"]).empty()  # the job is lost, its guard is not
    assert queue.get_queue(redis, app.config["QUEUE_NAME"]).count == 0
    again = client.post("/v1/payouts/runs", headers=operator)
    assert again.status_code == 200 and again.get_json()["id"] == run_id
    assert queue.get_queue(redis, app.config["QUEUE_NAME"]).count == 1, "the open run was not enqueued again"


def test_runs_started_at_once_are_one_run_and_executing_it_twice_pays_once(app: Flask, operator: Headers) -> None:
    engine = get_engine(app)
    owed = _workers_with_balances(engine, 300)
    barrier = threading.Barrier(8)
    answers: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            client = app.test_client()
            barrier.wait(timeout=30)
            response = client.post("/v1/payouts/runs", headers=operator)
            answers.append((response.status_code, response.get_json()["id"]))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(code for code, _ in answers) == [200] * 7 + [201]
    assert len({run_id for _, run_id in answers}) == 1
    run_id = answers[0][1]
    assert _count(engine, select(func.count()).select_from(PayoutRun)) == 1

    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def execute() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(payouts.execute_run(engine, run_id))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=execute) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert [r["state"] for r in results] == ["done", "done"]
    assert all(r["total_cents"] == sum(owed.values()) and r["workers"] == len(owed) for r in results)
    _assert_paid_exactly_once(engine, run_id, owed)


def test_retried_requests_move_money_once(app: Flask, operator: Headers) -> None:
    engine = get_engine(app)
    client = app.test_client()
    requester_id = client.get("/v1/me", headers=bearer(new_key(app, "requester", "r"))).get_json()["id"]
    url = f"/v1/accounts/{requester_id}/funds"
    funds = select(func.count()).select_from(LedgerTxn).where(LedgerTxn.kind == "fund")

    def balance() -> int:
        with session_scope(engine) as session:
            return ledger.balance(session, ledger.requester_account(requester_id))

    first = client.post(
        url, json={"amount_cents": 700, "currency": "USD"}, headers={**operator, "Idempotency-Key": "a"}
    )
    retry = client.post(
        url, json={"amount_cents": 700, "currency": "USD"}, headers={**operator, "Idempotency-Key": "a"}
    )
    assert first.status_code == 201 and retry.status_code == 201
    assert retry.get_json() == first.get_json()
    assert balance() == 700 and _count(engine, funds) == 1
    other = client.post(
        url, json={"amount_cents": 700, "currency": "USD"}, headers={**operator, "Idempotency-Key": "b"}
    )
    assert other.status_code == 201 and other.get_json()["transaction_id"] != first.get_json()["transaction_id"]
    assert balance() == 1400 and _count(engine, funds) == 2
    unkeyed = [client.post(url, json={"amount_cents": 1, "currency": "USD"}, headers=operator) for _ in range(2)]
    assert [r.status_code for r in unkeyed] == [201, 201]
    assert balance() == 1402 and _count(engine, funds) == 4

    owed = _workers_with_balances(engine, 5)
    keyed = {**operator, "Idempotency-Key": "run-1"}
    run = client.post("/v1/payouts/runs", headers=keyed)
    assert run.status_code == 201
    run_id = run.get_json()["id"]
    assert client.post("/v1/payouts/runs", headers=keyed).get_json()["id"] == run_id
    payouts.execute_run(engine, run_id)
    replay = client.post("/v1/payouts/runs", headers=keyed)  # after it finished: still that run
    assert replay.status_code == 200
    assert replay.get_json()["id"] == run_id and replay.get_json()["state"] == "done"
    assert _count(engine, select(func.count()).select_from(PayoutRun)) == 1
    _assert_paid_exactly_once(engine, run_id, owed)
    fresh = client.post("/v1/payouts/runs", headers={**operator, "Idempotency-Key": "run-2"})
    assert fresh.status_code == 201 and fresh.get_json()["id"] != run_id
    with session_scope(engine) as session:
        assert ledger_audit.check(session) == []
