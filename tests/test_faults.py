"""The standing fault suite (issue 16 item 7): the API under gunicorn and RQ workers, a crowd of
threads working through the real HTTP API, and one fault each: kill -9 of an RQ worker in the
middle of an aggregation and of a payout run, Redis restarted empty during a crowd run,
PostgreSQL restarted during a crowd run, a gunicorn worker killed mid-request.

After each: no item over its overlap, no worker twice on an item, every acknowledged submit
stored, the ledger check clean, every accepted task paid exactly once (`faults.check_invariants`),
and the time to recover printed (`pytest -s`; README, Reliability). The stores a test breaks are
its own (`own_postgres`, `own_redis`); the workers sweep every second (deployments: 10 s)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from flask import Flask
from redis import Redis
from rq import Worker
from sqlalchemy import Engine, text

from marketplace import queue
from marketplace.db import dispose, get_engine, session_scope
from marketplace.services import acceptance, aggregating
from tests.conftest import bearer, make_app, new_key, post_job
from tests.faults import (
    Crowd,
    OwnPostgres,
    OwnRedis,
    RqWorker,
    check_invariants,
    engine_for,
    recovered,
    undecided,
    wait_for,
    work_one,
)
from tests.serving import Server, create_key, environment, serve

SWEEP = "1"
CROWD = 8


def _env(database_url: str, tmp_path: Path, redis_url: str | None = None) -> dict[str, str]:
    env = environment(
        database_url,
        tmp_path / "var",
        MARKETPLACE_SWEEP_SECONDS=SWEEP,
        MARKETPLACE_RATE_LIMITS="false",  # the crowd is one address and a few keys on purpose
    )
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def _all_done(engine: Engine, job_id: int) -> bool:
    """The job completed, aggregated up to its last kept answer, every submitted task decided."""
    with session_scope(engine) as session:
        state = session.execute(text("SELECT state FROM job WHERE id = :j"), {"j": job_id}).scalar()
        run = aggregating.last_run(session, job_id)
        latest = aggregating.latest_answer_id(session, job_id)
    return state == "completed" and run is not None and run.last_answer_id >= latest and undecided(engine) == 0


def _crowd_run(
    server: Server, keys: list[str], job_id: int, crowd: Crowd, during: Callable[[], None] | None = None
) -> float:
    """Every key works (lease, submit) until the job has nothing left; `during` runs in this
    thread meanwhile (the fault). The seconds the run took."""
    started = time.monotonic()
    errors: list[BaseException] = []

    def work(key: str) -> None:
        try:
            with httpx.Client(base_url=server.base, timeout=30) as client:
                while work_one(client, key, job_id, crowd):
                    pass
        except BaseException as error:  # reported by the test
            errors.append(error)

    threads = [threading.Thread(target=work, args=(key,), daemon=True) for key in keys]
    for thread in threads:
        thread.start()
    if during is not None:
        during()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors[:3]
    return time.monotonic() - started


def _tasks_done(crowd: Crowd) -> int:
    return len(crowd.acknowledged)


@contextmanager
def _stack(env: dict[str, str], tmp_path: Path, *serve_args: str) -> Iterator[tuple[Server, RqWorker]]:
    worker = RqWorker(env, tmp_path / "worker.log")
    worker.start()
    try:
        with serve(env, tmp_path / "serve.log", *serve_args) as server:
            yield server, worker
    finally:
        worker.stop()


def _setup_job(env: dict[str, str], server: Server, items: int, **job: Any) -> tuple[int, list[str]]:
    """A funded, launched job of `items` real items (5% golden more) and the crowd's keys."""
    operator = {"Authorization": f"Bearer {create_key(env, 'operator', 'ops')}"}
    with httpx.Client(base_url=server.base, timeout=30) as client:

        def account(role: str, name: str) -> str:
            made = client.post("/v1/accounts", json={"role": role, "name": name}, headers=operator)
            assert made.status_code == 201, made.text
            return str(made.json()["key"])

        requester = {"Authorization": f"Bearer {account('requester', 'req')}"}
        body = {
            "title": "faults",
            "instructions": "pick",
            "annotation": {"type": "classification", "labels": ["cat", "dog"]},
            "overlap": 3,
            "golden_ratio": 0.1,
            "items_per_task": 5,
            "reward_cents": 1,
            "budget_cents": 100_000,
            "aggregation": "majority_vote",
            **job,
        }
        made = client.post("/v1/jobs", json=body, headers=requester)
        assert made.status_code == 201, made.text
        job_id = made.json()["id"]
        payload = [{"key": f"i{i}", "data": {"url": f"{i}.jpg"}} for i in range(items)]
        payload += [{"key": f"g{i}", "data": {"url": f"g{i}.jpg"}, "answer": "cat"} for i in range(max(2, items // 20))]
        assert client.post(f"/v1/jobs/{job_id}/items", json=payload, headers=requester).status_code == 201
        requester_id = client.get("/v1/me", headers=requester).json()["id"]
        funded = client.post(
            f"/v1/accounts/{requester_id}/funds", json={"amount_cents": 100_000, "currency": "USD"}, headers=operator
        )
        assert funded.status_code == 201
        assert client.post(f"/v1/jobs/{job_id}/launch", headers=requester).status_code == 200
        keys = [account("worker", f"w{n}") for n in range(CROWD)]
    return job_id, keys


# --- Redis and PostgreSQL restarted during a crowd run ---------------------------------------


def test_redis_restarted_empty_during_a_crowd_run(database_url: str, own_redis: OwnRedis, tmp_path: Path) -> None:
    """Redis dies with the run ~85% through and stays down to its end: the API keeps serving
    (limits pass, follow-ups are logged), and the aggregation the finish queued is lost with
    everything else. Redis comes back empty: the sweep finds the work from the database."""
    env = _env(database_url, tmp_path, own_redis.url)
    engine = engine_for(database_url)
    crowd = Crowd()
    with _stack(env, tmp_path, "--workers", "2") as (server, worker):
        job_id, keys = _setup_job(env, server, items=120)
        tasks = 120 * 3 // 5

        def fault() -> None:
            wait_for(lambda: _tasks_done(crowd) >= tasks * 0.85, 120, every=0.02, what="the run")
            own_redis.kill()

        _crowd_run(server, keys, job_id, crowd, during=fault)
        assert not _all_done(engine, job_id)  # the finish's aggregation went nowhere
        own_redis.start()
        seconds = wait_for(lambda: _all_done(engine, job_id), 90, what="aggregated and decided after Redis came back")
        assert worker.process is not None and worker.process.poll() is None  # it outlived the outage
    figures = check_invariants(engine, [job_id], crowd)
    engine.dispose()
    assert not [s for s in crowd.statuses if s.endswith(" 500")], crowd.statuses
    recovered(
        "redis restarted empty during a crowd run: everything aggregated and decided",
        seconds,
        since="redis back",
        **figures,
    )


def test_postgres_restarted_during_a_crowd_run(own_postgres: OwnPostgres, redis: Redis, tmp_path: Path) -> None:
    """PostgreSQL stops (fast: every connection cut) with the run ~40% through and starts 2 s
    later: meanwhile the API answers 503 with Retry-After, never 500; it recovers by itself
    (no restart of anything) and the crowd finishes the job."""
    env = _env(own_postgres.url(), tmp_path)
    engine = engine_for(own_postgres.url())
    crowd = Crowd()
    marks: dict[str, float] = {}
    with _stack(env, tmp_path, "--workers", "2") as (server, _worker):
        job_id, keys = _setup_job(env, server, items=150)
        tasks = 150 * 3 // 5

        def fault() -> None:
            wait_for(lambda: _tasks_done(crowd) >= tasks * 0.4, 120, every=0.02, what="the run")
            marks["down"] = own_postgres.stop("fast")
            time.sleep(2)
            marks["up"] = own_postgres.start()

        _crowd_run(server, keys, job_id, crowd, during=fault)
        wait_for(lambda: _all_done(engine, job_id), 90, what="aggregated and decided")
    figures = check_invariants(engine, [job_id], crowd)
    engine.dispose()
    refused = sum(n for s, n in crowd.statuses.items() if s.endswith(" 503"))
    assert refused > 0, crowd.statuses  # the outage was seen, as 503s
    assert not [s for s in crowd.statuses if s.endswith(" 500")], crowd.statuses
    down = marks["up"] - marks["down"]  # from the stop's end (every connection cut) to the start's
    without = crowd.gap_around(marks["down"])  # the crowd's wait between two 2xx, around the stop
    recovered(
        "postgres restarted during a crowd run: served again, beyond the server's own downtime",
        max(0.0, without - down),
        server_down_s=round(down, 2),
        clients_without_a_2xx_s=round(without, 2),
        answered_503=refused,
        answered_500=0,
        **figures,
    )


# --- a gunicorn worker killed mid-request ------------------------------------------------------


def _gunicorn_workers(serve_pid: int) -> list[psutil.Process]:
    """The serving processes: `marketplace serve` runs gunicorn's master, which forks them."""
    (master,) = psutil.Process(serve_pid).children()
    return master.children()


def test_a_gunicorn_worker_killed_mid_request(database_url: str, redis: Redis, tmp_path: Path) -> None:
    env = _env(database_url, tmp_path)
    engine = engine_for(database_url)
    crowd = Crowd()
    marks: dict[str, float] = {}
    with _stack(env, tmp_path, "--workers", "2", "--threads", "4") as (server, _worker):
        job_id, keys = _setup_job(env, server, items=150)
        serve_pid = _serve_pid(server)
        before = {p.pid for p in _gunicorn_workers(serve_pid)}
        assert len(before) == 2

        def fault() -> None:
            wait_for(lambda: _tasks_done(crowd) >= 20, 120, every=0.01, what="the run")
            victim = sorted(before)[0]
            os.kill(victim, signal.SIGKILL)
            marks["killed"] = time.monotonic()
            marks["acknowledged_at_kill"] = _tasks_done(crowd)
            wait_for(lambda: len({p.pid for p in _gunicorn_workers(serve_pid)} - before) == 1, 30, every=0.02)
            marks["replaced"] = time.monotonic()

        _crowd_run(server, keys, job_id, crowd, during=fault)
        after = {p.pid for p in _gunicorn_workers(serve_pid)}
        assert len(after) == 2 and len(after & before) == 1
        # Leases whose answer died with the process stay open until they expire (issue 11 item 10:
        # a lease Idempotency-Key would let the client take its own back); what was submitted is
        # decided and paid.
        wait_for(lambda: undecided(engine) == 0, 60, what="the submitted tasks decided")
    figures = check_invariants(engine, [job_id], crowd)
    with engine.connect() as conn:
        orphans = conn.execute(text("SELECT count(*) FROM assignment WHERE state = 'leased'")).scalar()
    engine.dispose()
    cut = sum(n for s, n in crowd.statuses.items() if "Error" in s)
    assert not [s for s in crowd.statuses if s.endswith(" 500")], crowd.statuses
    recovered(
        "gunicorn worker killed mid-request: replaced by the master",
        marks["replaced"] - marks["killed"],
        requests_cut=cut,
        leases_left_open=orphans,
        **figures,
    )


def _serve_pid(server: Server) -> int:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "serve" in cmdline and f"127.0.0.1:{server.port}" in cmdline and "gunicorn" not in " ".join(cmdline):
            return int(process.pid)
    raise AssertionError("no serve process")


# --- kill -9 of an RQ worker mid-aggregation and mid-payout run ---------------------------------


@pytest.fixture
def busy_app(database_url: str, redis: Redis) -> Iterator[Flask]:
    app = make_app(database_url)
    yield app
    dispose(app)


def _worked_job(app: Flask, items: int, workers: int, tasks_each: int | None = None) -> tuple[int, Crowd]:
    """A job worked to its end through the API in-process (its follow-ups queued in Redis, no
    RQ worker running yet): every item answered by three workers, each doing `tasks_each` tasks
    (None: as many as it gets)."""
    client = app.test_client()
    job = post_job(client, bearer(new_key(app, "requester", "req")), items=items, golden=items // 20, overlap=3)
    crowd = Crowd()

    class InProcess:
        """`work_one` over Flask's test client."""

        def post(self, path: str, json: Any, headers: dict[str, str]) -> Any:
            return _Response(client.post(path, json=json, headers=headers))

    for n in range(workers):
        key = new_key(app, "worker", f"w{n}")
        done = 0
        while (tasks_each is None or done < tasks_each) and work_one(InProcess(), key, job["id"], crowd):  # type: ignore[arg-type]
            done += 1
    return int(job["id"]), crowd


class _Response:
    def __init__(self, response: Any) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.text = response.get_data(as_text=True)
        self._json = response.get_json(silent=True)

    def json(self) -> Any:
        return self._json


def _workers(env: dict[str, str], tmp_path: Path, count: int) -> list[RqWorker]:
    started = [RqWorker(env, tmp_path / f"worker{n}.log") for n in range(count)]
    for worker in started:
        worker.start()
    return started


def _kill_the_one_running(
    redis: Redis, workers: list[RqWorker], funcs: tuple[str, ...], when: Callable[[], bool]
) -> float:
    """kill -9 the (live) worker running one of `funcs`, at a moment `when()` holds; the time of
    the kill."""
    alive = {w.process.pid: w for w in workers if w.process is not None and w.process.poll() is None}
    rq_queue = queue.get_queue(redis)
    victim: list[RqWorker] = []

    def running() -> bool:
        for rq_worker in Worker.all(connection=redis):
            job_id = rq_worker.get_current_job_id()
            if rq_worker.pid not in alive or job_id is None:
                continue
            job = rq_queue.fetch_job(job_id)
            if job is not None and job.func_name in funcs and when():
                victim.append(alive[rq_worker.pid])
                return True
        return False

    wait_for(running, 90, every=0.01, what=f"{' or '.join(funcs)} running")
    return victim[0].kill9()


def test_an_rq_worker_killed_mid_aggregation(busy_app: Flask, database_url: str, redis: Redis, tmp_path: Path) -> None:
    """Three workers; the one running the job's aggregation is killed before it stored its
    results, then the one running it again, in the middle of its decisions (results stored,
    tasks undecided, their money held: the case that waited days for auto-accept)."""
    job_id, crowd = _worked_job(busy_app, items=300, workers=CROWD)
    engine = get_engine(busy_app)
    assert undecided(engine) > 0

    def runs() -> int:
        return _scalar(engine, f"SELECT count(*) FROM aggregationrun WHERE job_id = {job_id}")

    workers = _workers(_env(database_url, tmp_path), tmp_path, 3)
    try:
        _kill_the_one_running(redis, workers, (queue.AGGREGATE_JOB,), lambda: runs() == 0)
        assert runs() == 0
        # The next aggregation stores its results, then decides (or the sweep's decision job,
        # which may take the job's decision lock first): kill whichever worker is deciding. A
        # batch decides 50 tasks in a few statements, too fast to catch between two polls, so
        # the last task's row is held here: the run decides the batches before it, then waits.
        last = _scalar(engine, f"SELECT max(id) FROM assignment WHERE job_id = {job_id} AND state = 'submitted'")
        deciding = (queue.AGGREGATE_JOB, queue.DECIDE_JOB)
        with engine.connect() as holder:
            holder.execute(text(f"SELECT id FROM assignment WHERE id = {last} FOR UPDATE"))
            killed = _kill_the_one_running(
                redis, workers, deciding, lambda: runs() > 0 and undecided(engine) > 0 and _a_lock_wait(engine)
            )
            holder.rollback()
        left = undecided(engine)
        seconds = wait_for(lambda: _all_done(engine, job_id), 90, what="aggregated and decided")
    finally:
        for worker in workers:
            worker.stop()
    assert killed > 0 and left > 0
    figures = check_invariants(engine, [job_id], crowd)
    recovered(
        "rq worker killed mid-aggregation (twice): aggregated and decided",
        seconds,
        undecided_at_second_kill=left,
        **figures,
    )


def test_an_rq_worker_killed_mid_payout_run(busy_app: Flask, database_url: str, redis: Redis, tmp_path: Path) -> None:
    job_id, crowd = _worked_job(busy_app, items=200, workers=120, tasks_each=1)
    engine = get_engine(busy_app)
    with session_scope(engine) as session:  # what the aggregation job would do: workers earn
        aggregating.aggregate_job(session, job_id)
        acceptance.decide_job(session, job_id, acceptance.Limits.from_config(busy_app.config))
    redis.flushdb()  # the follow-ups of the run: not this test's subject
    earners = _scalar(engine, "SELECT count(*) FROM ledgerbalance WHERE account LIKE 'worker:%' AND balance > 0")
    assert earners >= 100
    operator = bearer(new_key(busy_app, "operator", "ops"))
    workers = _workers(_env(database_url, tmp_path), tmp_path, 2)
    try:
        wait_for(lambda: len(Worker.all(connection=redis)) == 2, 60, what="both workers up")
        run = busy_app.test_client().post("/v1/payouts/runs", headers=operator).get_json()
        paid = f"SELECT count(*) FROM ledgertxn WHERE kind = 'payout' AND run_id = {int(run['id'])}"
        killed = _kill_the_one_running(redis, workers, (queue.PAYOUT_JOB,), lambda: _scalar(engine, paid) > 0)
        paid_at_kill = _scalar(engine, paid)
        done = f"SELECT count(*) FROM payoutrun WHERE id = {int(run['id'])} AND state = 'done'"
        seconds = wait_for(lambda: _scalar(engine, done) == 1, 90, what="the payout run finished")
    finally:
        for worker in workers:
            worker.stop()
    assert 0 < paid_at_kill <= earners
    assert _scalar(engine, paid) == earners  # everyone once
    assert _scalar(engine, "SELECT count(*) FROM ledgerbalance WHERE account LIKE 'worker:%' AND balance <> 0") == 0
    figures = check_invariants(engine, [job_id], crowd)
    recovered(
        "rq worker killed mid-payout run: the run finished, nobody paid twice",
        seconds,
        paid_before_kill=f"{paid_at_kill} of {earners}",
        **figures,
    )
    assert killed > 0


def _a_lock_wait(engine: Engine) -> bool:
    """Whether some session of this database waits for a lock."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    return _scalar(engine, sql) > 0


def _scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())
