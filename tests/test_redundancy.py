"""Redundancy is counted per item: what an item has (valid answers, open leases, free slots)
never exceeds what the job asks for, whatever rounds exclusions freed; the job's state follows
its pool; and the check finds answers beyond the redundancy ordered."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from marketplace.db import get_engine, session_scope
from marketplace.models import Answer, Slot
from marketplace.services import ledger_audit
from tests.conftest import bearer, new_key, post_job, work_through

Headers = dict[str, str]


def _count(app: Flask, model: Any, job_id: int, **where: Any) -> int:
    with session_scope(get_engine(app)) as session:
        query = select(func.count()).select_from(model).where(model.job_id == job_id)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(session.execute(query).scalar_one())


def _problems(app: Flask) -> list[str]:
    with session_scope(get_engine(app)) as session:
        return ledger_audit.check(session)


def _worker_id(client: FlaskClient, headers: Headers) -> int:
    return int(client.get("/v1/me", headers=headers).get_json()["id"])


def test_lowering_overlap_after_excluded_answers_buys_no_answer_nobody_ordered(
    app: Flask, client: FlaskClient, requester: Headers, operator: Headers
) -> None:
    """The audit's run: overlap 3 on 30 items, rounds 0-2 answered; the workers of rounds 0 and 1
    are banned with their answers excluded (60 rounds reopen); overlap lowered to 2 keeps only
    what each item still wants (30), so new workers give 60 answers in all, not 90."""
    job = post_job(client, requester, items=30, golden=0, overlap=3, golden_ratio=0.0, items_per_task=5)
    first, second, third = (bearer(new_key(app, "worker", f"round-{n}")) for n in range(3))
    for worker in (first, second, third):
        assert work_through(client, worker, job["id"], "cat") == 6
    for worker in (first, second):
        banned = client.post(
            f"/v1/workers/{_worker_id(client, worker)}/ban",
            json={"reason": "spam", "exclude_answers": True},
            headers=operator,
        )
        assert banned.status_code == 200, banned.get_json()
    assert _count(app, Slot, job["id"]) == 60
    patched = client.patch(f"/v1/jobs/{job['id']}", json={"overlap": 2}, headers=requester)
    assert patched.status_code == 200, patched.get_json()
    assert _count(app, Slot, job["id"]) == 30
    assert patched.get_json()["progress"]["answers_free"] == 30
    late, later = bearer(new_key(app, "worker", "late")), bearer(new_key(app, "worker", "later"))
    assert work_through(client, late, job["id"], "cat") == 6
    assert work_through(client, later, job["id"], "cat") == 0
    assert _count(app, Answer, job["id"], excluded=False) == 60
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["state"] == "completed"
    assert _problems(app) == []


def test_a_jobs_state_follows_its_pool_when_overlap_goes_down_and_up(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = post_job(client, requester, items=10, golden=0, overlap=2, golden_ratio=0.0, items_per_task=5)
    for n in range(2):
        assert work_through(client, bearer(new_key(app, "worker", f"w{n}")), job["id"], "cat") == 2
    url = f"/v1/jobs/{job['id']}"
    assert client.get(url, headers=requester).get_json()["state"] == "completed"
    down = client.patch(url, json={"overlap": 1}, headers=requester).get_json()
    assert (down["state"], down["progress"]["answers_free"]) == ("completed", 0)
    back = client.patch(url, json={"overlap": 2}, headers=requester).get_json()
    assert (back["state"], back["progress"]["answers_free"]) == ("completed", 0)  # each item has its two
    up = client.patch(url, json={"overlap": 3}, headers=requester).get_json()
    assert (up["state"], up["progress"]["answers_free"]) == ("running", 10)
    assert work_through(client, bearer(new_key(app, "worker", "third")), job["id"], "cat") == 2
    assert client.get(url, headers=requester).get_json()["state"] == "completed"
    assert _problems(app) == []


def test_the_check_finds_answers_beyond_the_redundancy_ordered(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = post_job(client, requester, items=5, golden=0, overlap=1, golden_ratio=0.0, items_per_task=5)
    assert work_through(client, bearer(new_key(app, "worker", "one")), job["id"], "cat") == 1
    assert _problems(app) == []
    with session_scope(get_engine(app)) as session:  # a pool that issued more than it was asked for
        session.execute(
            text("INSERT INTO slot (job_id, item_id, round) SELECT job_id, id, 1 FROM item WHERE job_id = :job"),
            {"job": job["id"]},
        )
        session.execute(text("UPDATE job SET state = 'running' WHERE id = :job"), {"job": job["id"]})
    assert work_through(client, bearer(new_key(app, "worker", "two")), job["id"], "cat") == 1
    assert f"job {job['id']}: 5 answers beyond the 1 ordered, on 5 items" in _problems(app)


def test_the_sweep_completes_a_job_left_running_with_nothing_pending(
    app: Flask, client: FlaskClient, requester: Headers, redis: Any, monkeypatch: Any
) -> None:
    """Two last submits can each miss the job's end (one's statement began before the last lease
    took the last slot and saw the slot; that lease's submit saw the first still open), leaving
    the job running with nothing left: seen once in the Redis fault test. The sweep finds such a
    job from the database, completes it and queues its final aggregation."""
    import workers.jobs
    from tests.conftest import REDIS_URL

    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    workers.jobs._apps.clear()
    job = post_job(client, requester, items=10, golden=0, overlap=1, golden_ratio=0.0, items_per_task=5)
    assert work_through(client, bearer(new_key(app, "worker", "w")), job["id"], "cat") == 2
    with session_scope(get_engine(app)) as session:  # as the race leaves it
        session.execute(text("UPDATE job SET state = 'running' WHERE id = :j"), {"j": job["id"]})
    redis.flushdb()  # and what the submits queued is gone
    summary = workers.jobs.sweep()
    assert summary["jobs_finished"] == [job["id"]] and job["id"] in summary["aggregations_due"]
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["state"] == "completed"
    assert workers.jobs.sweep()["jobs_finished"] == []
