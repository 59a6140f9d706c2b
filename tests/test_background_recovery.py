"""Background work that recovers by itself (issue 11 item 13), each fault with its time to
recover: the sweep's schedule erased by a Redis restart, a sweep run failed by a PostgreSQL
outage, a dead worker holding RQ's scheduler lock, and tasks left undecided (money held) by a
worker killed between an aggregation and its decisions.

Each test runs `marketplace worker` as a subprocess with a 1 s sweep (`MARKETPLACE_SWEEP_SECONDS`;
deployments use 10 s, which adds up to 9 s to each figure) against servers of its own where it
stops or kills them. A sweep is seen by what it does: a lease past its deadline is expired."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from rq import Worker
from sqlalchemy import select, text, update

from marketplace.db import dispose, get_engine, session_scope
from marketplace.models import Assignment, utcnow
from marketplace.pool.release import EXPIRY_GRACE
from marketplace.services import aggregating
from tests.conftest import bearer, make_app, new_key, post_job, work_through
from tests.faults import OwnPostgres, OwnRedis, RqWorker, check_invariants, recovered, undecided, wait_for
from tests.serving import environment

SWEEP = "1"


def _worker(database_url: str, tmp_path: Path, redis_url: str | None = None, name: str = "worker") -> RqWorker:
    env = environment(database_url, tmp_path / "var", MARKETPLACE_SWEEP_SECONDS=SWEEP)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return RqWorker(env, tmp_path / f"{name}.log")


def _overdue_lease(app: Flask, job_id: int) -> int:
    """A lease whose deadline (and grace) passed, as a client that went away leaves it."""
    client = app.test_client()
    worker = bearer(new_key(app, "worker", "gone"))
    lease = client.post("/v1/assignments", json={"job_id": job_id}, headers=worker)
    assert lease.status_code == 201, lease.get_json()
    task_id = int(lease.get_json()["id"])
    with session_scope(get_engine(app)) as session:
        past = utcnow() - EXPIRY_GRACE - timedelta(minutes=5)
        session.execute(update(Assignment).where(Assignment.id == task_id).values(expires_at=past))
    return task_id


def _expired(app: Flask, assignment_id: int) -> bool:
    with session_scope(get_engine(app)) as session:
        return session.execute(select(Assignment.state).where(Assignment.id == assignment_id)).scalar() == "expired"


def _sweep_seen(app: Flask, job_id: int, timeout: float = 30) -> float:
    """Seconds until a sweep expired a fresh overdue lease."""
    task = _overdue_lease(app, job_id)
    return wait_for(lambda: _expired(app, task), timeout, what="a sweep")


@pytest.fixture
def job(app: Flask, client: object, requester: dict[str, str]) -> int:
    return int(post_job(app.test_client(), requester, items=60, golden=4, overlap=2)["id"])


def test_the_sweep_comes_back_after_redis_lost_its_schedule(
    app: Flask, job: int, database_url: str, tmp_path: Path
) -> None:
    with OwnRedis.running(tmp_path / "redis") as own_redis:
        worker = _worker(database_url, tmp_path, own_redis.url)
        worker.start()
        try:
            _sweep_seen(app, job)
            own_redis.kill()
            time.sleep(1)
            own_redis.start()  # empty: no scheduled sweep, no guard, no queue
            seconds = _sweep_seen(app, job)
        finally:
            worker.stop()
    recovered("redis restarted: sweep running again", seconds, sweep_interval_s=SWEEP)


@pytest.fixture
def own_app(own_postgres: OwnPostgres, redis: Redis) -> Iterator[Flask]:
    application = make_app(own_postgres.url())
    yield application
    dispose(application)


def test_the_sweep_comes_back_after_runs_failed_in_a_postgres_outage(
    own_app: Flask, own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    job_id = int(post_job(own_app.test_client(), bearer(new_key(own_app, "requester")), items=40, golden=4)["id"])
    worker = _worker(own_postgres.url(), tmp_path)
    worker.start()
    try:
        _sweep_seen(own_app, job_id)
        down = own_postgres.stop("fast")
        log = tmp_path / "worker.log"
        wait_for(lambda: "OperationalError" in log.read_text(), 30, what="a sweep failing")  # a run fails
        time.sleep(2)  # and more
        own_postgres.start()
        outage = time.monotonic() - down
        seconds = _sweep_seen(own_app, job_id)
    finally:
        worker.stop()
    recovered("postgres outage: sweep running again", seconds, outage_s=round(outage, 1), sweep_interval_s=SWEEP)


def test_a_dead_worker_holding_rqs_scheduler_lock_does_not_stop_the_sweep(
    app: Flask, job: int, database_url: str, redis: Redis, tmp_path: Path
) -> None:
    first = _worker(database_url, tmp_path, name="first")
    first.start()
    lock = "rq:scheduler-lock:marketplace"
    try:
        wait_for(lambda: redis.get(lock), 30, what="the first worker's scheduler lock")
        _sweep_seen(app, job)
    finally:
        first.kill9()
    assert redis.get(lock) is not None  # the dead worker's lock stays (61 s)
    second = _worker(database_url, tmp_path, name="second")
    task = _overdue_lease(app, job)
    started = time.monotonic()
    second.start()
    try:
        up = wait_for(lambda: len(Worker.all(connection=redis)) > 1, 60, every=0.05, what="the new worker")
        wait_for(lambda: _expired(app, task), 30, what="a sweep under the dead worker's lock")
        seconds = time.monotonic() - started
        assert redis.get(lock) is not None  # RQ's scheduler is still held up: the sweep does not need it
    finally:
        second.stop()
    recovered(
        "scheduler lock held by a killed worker: sweep running again",
        seconds - up,
        note=f"after the new worker registered ({up:.1f} s after its start)",
    )


def test_tasks_left_undecided_by_a_killed_acceptance_are_decided_by_the_sweep(
    app: Flask, job: int, database_url: str, tmp_path: Path
) -> None:
    worker = _worker(database_url, tmp_path)
    worker.start()
    try:
        _sweep_seen(app, job, timeout=60)  # the worker is up and sweeping
        # The crowd's submits queue their follow-ups where no worker looks (as if Redis lost
        # them); the aggregation then runs and commits, and its worker dies before deciding.
        lost = make_app(database_url, QUEUE_NAME="nobody-works-this")
        client = lost.test_client()
        for n in range(3):
            work_through(client, bearer(new_key(lost, "worker", f"w{n}")), job, label="cat")
        dispose(lost)
        engine = get_engine(app)
        with session_scope(engine) as session:
            aggregating.aggregate_job(session, job)
        killed = time.monotonic()
        waiting = undecided(engine)
        assert waiting > 0 and _held(app, job) > 0
        wait_for(lambda: undecided(engine) == 0, 60, what="the undecided tasks decided")
        seconds = time.monotonic() - killed
    finally:
        worker.stop()
    check_invariants(engine, [job])
    assert _held(app, job) == 0  # nothing held for decided work
    recovered("tasks undecided after a killed acceptance: all decided", seconds, tasks=waiting, sweep_interval_s=SWEEP)


def _held(app: Flask, job_id: int) -> int:
    with get_engine(app).connect() as conn:
        held = conn.execute(text("SELECT balance FROM ledgerbalance WHERE account = :a"), {"a": f"job:{job_id}:holds"})
        return int(held.scalar_one())
