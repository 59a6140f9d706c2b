"""PostgreSQL's one-statement lease: one worker's concurrent leases still serialise.

The lease statement locks the worker's row, but its snapshot predates the lock: a lease that
waited for another lease of the same worker may pick an item that one took, which the unique
(job, worker, item) of the task entries refuses, and the lease runs again, then with the
worker's row locked before its statement starts, so that it sees what the other took. Clients
never see it (taking items item by item, several rounds of one item sit side by side in the
queue, and one-statement retries lost this race up to eight times in a row: a 500).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from flask import Flask
from sqlalchemy import Engine, select

from marketplace.db import get_engine, get_hot_engine, make_engine, session_scope
from marketplace.models import AssignmentItem, Job
from marketplace.pool import lease, lease_sql, submit
from tests.conftest import bearer, new_key, post_job


def test_one_workers_concurrent_leases_never_fail_or_repeat_an_item(app: Flask) -> None:
    app.config.update(MAX_OPEN_LEASES=1000, MAX_OPEN_LEASES_PER_JOB=1000)  # the race, not the caps
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    job = post_job(client, requester, items=60, golden=6, overlap=3, items_per_task=3, golden_ratio=0.34)
    worker = bearer(new_key(app, "worker", "racer"))
    statuses: list[int] = []
    lock = threading.Lock()

    def lease() -> None:
        test_client = app.test_client()
        for _ in range(6):
            response = test_client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)
            with lock:
                statuses.append(response.status_code)

    threads = [threading.Thread(target=lease) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(statuses) <= {201, 204}, Counter(statuses)
    with session_scope(get_engine(app)) as session:
        seen = session.execute(select(AssignmentItem.item_id).where(AssignmentItem.job_id == job["id"])).scalars().all()
    assert len(seen) == len(set(seen)), "the worker got an item twice"
    assert statuses.count(201) * 3 == len(seen)


def test_a_banned_worker_is_refused_and_an_unknown_job_is_404(app: Flask) -> None:
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    operator = bearer(new_key(app, "operator"))
    job = post_job(client, requester, items=10, golden=2)
    worker_key = new_key(app, "worker", "w")
    worker = bearer(worker_key)
    assert client.post("/v1/assignments", json={"job_id": job["id"] + 1000}, headers=worker).status_code == 404
    me = client.get("/v1/me", headers=worker).get_json()
    banned = client.post(f"/v1/workers/{me['id']}/ban", json={"reason": "test"}, headers=operator)
    assert banned.status_code in (200, 201), banned.get_json()
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).status_code == 403
    assert client.post("/v1/assignments", json={}, headers=worker).status_code == 403


def test_hot_statements_run_prepared_generic_plans_and_orm_statements_stay_unprepared(app: Flask) -> None:
    """`db.HOT_PG_CONNECT_ARGS`: with PostgreSQL's default plan choice the submit was planned
    afresh on every call; on the hot engine the hot statements must be prepared and run their
    generic plan, and SQLAlchemy's statements must not be prepared (planned for their values)."""
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    job = post_job(client, requester, items=60, golden=6, items_per_task=5)
    worker = bearer(new_key(app, "worker", "w"))
    worker_id = client.get("/v1/me", headers=worker).get_json()["id"]
    engine = make_engine(app.config["DATABASE_URL"], hot=True, pool_size=2, max_overflow=0)  # caches to see
    try:
        for _ in range(6):
            task = lease.lease_task(engine, worker_id, job["id"])
            assert task is not None
            answers = [{"item_id": item["id"], "label": "cat"} for item in task.items]
            assert not submit.submit(engine, worker_id, task.id, answers).replayed
        for _ in range(12):  # over psycopg's default threshold (5) on each connection
            with session_scope(engine) as session:
                session.execute(select(Job.state).where(Job.id == job["id"])).one()
        raws = [engine.raw_connection() for _ in range(2)]
        rows = [
            row
            for raw in raws
            for row in raw.driver_connection.execute(  # type: ignore[union-attr]
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            ).fetchall()
        ]
        for raw in raws:
            raw.close()
    finally:
        engine.dispose()
    prepared = {statement for statement, _, _ in rows}
    assert {lease_sql.LEASE.sql, submit.SUBMIT.sql} <= prepared, "lease and submit are prepared"
    assert all("FROM job WHERE job.id" not in s for s in prepared), "an ORM statement was prepared"
    assert [(g, c) for _, g, c in rows if c or not g] == [], "a hot statement ran a custom plan"


def test_only_the_hot_engine_forces_generic_plans(app: Flask) -> None:
    """The rest of the app keeps psycopg's and PostgreSQL's defaults (prepared after 5 uses,
    the server's choice of plan): unprepared, the acceptance job ran ~40% longer."""

    def mode(engine: Engine) -> tuple[str, Any]:
        raw = engine.raw_connection()
        try:
            connection: Any = raw.driver_connection
            return connection.execute("SHOW plan_cache_mode").fetchone()[0], connection.prepare_threshold
        finally:
            raw.close()

    assert get_hot_engine(app) is not get_engine(app)
    assert mode(get_hot_engine(app)) == ("force_generic_plan", 2**62)
    assert mode(get_engine(app)) == ("auto", 5)


def test_a_lease_does_not_answer_no_work_while_the_work_is_only_locked(app: Flask, monkeypatch: Any) -> None:
    """A lease locks more slot rows than it takes, and another lease skips locked rows: near a
    job's end it found nothing and answered 204 while the work was free a moment later, and a
    worker told "no work" went away (a crowd test then left a job short of one answer). Here a
    transaction holds every free slot when the lease starts and lets go when the lease looks
    again: the lease takes the work."""
    import psycopg

    from marketplace.pool import lease as lease_module

    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    job = post_job(client, requester, items=4, golden=0, overlap=1, golden_ratio=0.0, items_per_task=2)
    worker = bearer(new_key(app, "worker", "late"))
    holder = psycopg.connect(app.config["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://"))
    holder.execute("SELECT id FROM slot WHERE job_id = %s FOR UPDATE", (job["id"],))
    looked = []
    original = lease_module._locked_work_left

    def release_then_look(cur: Any, job_id: int, worker_id: int) -> bool:
        looked.append(job_id)
        holder.commit()  # the other lease is done: its rows are free again
        return original(cur, job_id, worker_id)

    monkeypatch.setattr(lease_module, "_locked_work_left", release_then_look)
    try:
        response = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)
    finally:
        holder.close()
    assert response.status_code == 201, response.get_data(as_text=True)
    assert looked, "the first try found the rows locked"
    assert len(response.get_json()["items"]) == 2
