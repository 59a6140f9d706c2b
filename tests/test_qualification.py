"""Qualification: a test on golden items before real tasks, final when failed until an operator
resets it, carried over between one requester's jobs when the job allows.

`post_job` makes golden items whose answer is `cat`; answering `cat` is right on them.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from marketplace.db import get_engine, session_scope
from marketplace.models import Account, Assignment, AssignmentItem, AuditEvent, Item, Job, Qualification, utcnow
from marketplace.pool.release import EXPIRY_GRACE, reclaim_expired
from tests.conftest import bearer, job_body, new_key, post_job, work_through
from tests.test_api_bad_input import assert_error


def _worker(app: Flask, name: str = "w") -> dict[str, str]:
    return bearer(new_key(app, "worker", name))


def _worker_id(app: Flask, headers: dict[str, str]) -> int:
    me = app.test_client().get("/v1/me", headers=headers).get_json()
    return int(me["id"])


def _qual_job(
    client: FlaskClient,
    requester: dict[str, str],
    n: int = 3,
    pass_mark: float = 0.6,
    carry_over: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    overrides.setdefault("golden", 10)
    settings = {"items": n, "pass_mark": pass_mark, "carry_over": carry_over}
    return post_job(client, requester, qualification=settings, **overrides)


def _lease(client: FlaskClient, worker: dict[str, str], job_id: int | None = None) -> TestResponse:
    return client.post("/v1/assignments", json={} if job_id is None else {"job_id": job_id}, headers=worker)


def _entries(app: Flask, assignment_id: int) -> dict[int, tuple[int, bool]]:
    """Test-side truth: task reference -> (item id, golden)."""
    with session_scope(get_engine(app)) as session:
        rows = session.execute(
            select(AssignmentItem.id, Item.id, Item.is_golden)
            .join(Item, Item.id == AssignmentItem.item_id)
            .where(AssignmentItem.assignment_id == assignment_id)
        ).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def _take_test(client: FlaskClient, worker: dict[str, str], task: dict[str, Any], right: int, **headers: str) -> Any:
    """Answer the first `right` items correctly (`cat`), the rest wrongly."""
    answers = [{"item_id": item["id"], "label": "cat" if i < right else "dog"} for i, item in enumerate(task["items"])]
    response = client.post(
        f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers={**worker, **headers}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _row(app: Flask, job_id: int, worker_id: int) -> Qualification | None:
    with session_scope(get_engine(app)) as session:
        return session.execute(
            select(Qualification).where(Qualification.job_id == job_id, Qualification.worker_id == worker_id)
        ).scalar_one_or_none()


def _audit(app: Flask, action: str) -> list[AuditEvent]:
    with session_scope(get_engine(app)) as session:
        return list(session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars())


def test_a_passed_test_opens_real_tasks(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job = _qual_job(client, requester, n=3, pass_mark=0.6)
    assert job["qualification"] == {"items": 3, "pass_mark": 0.6, "carry_over": False}
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["qualification"] == job["qualification"]
    worker = _worker(app)
    worker_id = _worker_id(app, worker)

    first = _lease(client, worker, job["id"])
    assert first.status_code == 201
    test = first.get_json()
    assert test["kind"] == "qualification"
    entries = _entries(app, test["id"])
    assert len(test["items"]) == 3 and len(entries) == 3
    assert all(golden for _, golden in entries.values())  # exactly n golden items, nothing real
    assert client.get(f"/v1/assignments/{test['id']}", headers=worker).get_json()["kind"] == "qualification"
    row = _row(app, job["id"], worker_id)
    assert row is not None and row.state == "pending" and row.assignment_id == test["id"]

    # While the test is out the job gives nothing else, asked by id or not.
    assert _lease(client, worker, job["id"]).status_code == 204
    assert _lease(client, worker).status_code == 204

    outcome = _take_test(client, worker, test, right=2, **{"Idempotency-Key": "q1"})  # 2/3 >= 0.6
    assert outcome["qualification"] == "passed"
    assert outcome["answers"] == 3
    assert _take_test(client, worker, test, right=2, **{"Idempotency-Key": "q1"}) == outcome  # a retry: same result
    row = _row(app, job["id"], worker_id)
    assert row is not None and (row.state, row.correct, row.total, row.source) == ("passed", 2, 3, "test")
    assert row.decided_at is not None
    (event,) = _audit(app, "qualification_passed")
    assert event.subject_id == worker_id and event.details["correct"] == 2 and event.details["total"] == 3
    assert "cat" not in str(event.details)

    tested = {item_id for item_id, _ in entries.values()}
    for _ in range(3):
        lease = _lease(client, worker)
        assert lease.status_code == 201
        task = lease.get_json()
        assert task["kind"] == "task"
        seen = _entries(app, task["id"])
        assert any(not golden for _, golden in seen.values())
        assert not tested & {item_id for item_id, _ in seen.values()}  # the test's items never come back
        answers = [{"item_id": i["id"], "label": "dog"} for i in task["items"]]
        done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker)
        assert "qualification" not in done.get_json()  # a task's result says nothing of the kind


def test_a_test_graded_late_is_graded_at_the_next_lease(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    """A stop between storing a test's answers and grading it leaves it pending: the next lease grades it."""
    job = _qual_job(client, requester, n=2, pass_mark=1.0)
    worker = _worker(app)
    worker_id = _worker_id(app, worker)
    test = _lease(client, worker, job["id"]).get_json()
    assert _take_test(client, worker, test, right=2)["qualification"] == "passed"
    with session_scope(get_engine(app)) as session:
        session.execute(
            update(Qualification)
            .where(Qualification.job_id == job["id"])
            .values(state="pending", correct=None, decided_at=None)
        )
    lease = _lease(client, worker, job["id"])
    assert lease.status_code == 201 and lease.get_json()["kind"] == "task"
    row = _row(app, job["id"], worker_id)
    assert row is not None and (row.state, row.correct, row.total) == ("passed", 2, 2)


def test_no_test_when_the_job_has_no_free_work_left(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job = _qual_job(client, requester, n=2, pass_mark=0.5, items=1, overlap=1, golden_ratio=0.0)
    first, late = _worker(app, "first"), _worker(app, "late")
    test = _lease(client, first, job["id"]).get_json()
    assert _take_test(client, first, test, right=2)["qualification"] == "passed"
    assert _lease(client, first, job["id"]).get_json()["kind"] == "task"  # the one real slot
    assert _lease(client, late, job["id"]).status_code == 204  # nothing to qualify for
    assert _row(app, job["id"], _worker_id(app, late)) is None


def test_a_failed_test_is_final_until_an_operator_resets_it(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    job = _qual_job(client, requester, n=2, pass_mark=1.0, golden=6)
    other_job = post_job(client, requester, items=10, golden=2)  # no qualification
    worker = _worker(app)
    worker_id = _worker_id(app, worker)

    test = _lease(client, worker, job["id"]).get_json()
    first_items = {item_id for item_id, _ in _entries(app, test["id"]).values()}
    outcome = _take_test(client, worker, test, right=1)
    assert outcome == {k: outcome[k] for k in ("id", "state", "answers", "submitted_at", "qualification")}
    assert outcome["qualification"] == "failed"  # and nothing about which answer was wrong
    for _ in range(10):
        assert _lease(client, worker, job["id"]).status_code == 204
    elsewhere = _lease(client, worker)  # without a job id: the failed job is skipped
    assert elsewhere.status_code == 201
    assert elsewhere.get_json()["job"]["id"] == other_job["id"]
    (failed,) = _audit(app, "qualification_failed")
    assert failed.details["correct"] == 1 and failed.details["total"] == 2 and failed.details["pass_mark"] == 1.0

    listing = client.get(f"/v1/jobs/{job['id']}/qualifications", headers=requester)
    assert listing.status_code == 200
    (row,) = listing.get_json()
    assert row["worker_id"] == worker_id
    assert (row["state"], row["correct"], row["total"], row["source"]) == ("failed", 1, 2, "test")
    assert row["created_at"] and row["decided_at"]
    assert client.get(f"/v1/jobs/{job['id']}/qualifications", headers=operator).get_json() == [row]
    stranger = bearer(new_key(app, "requester", "stranger"))
    assert_error(client.get(f"/v1/jobs/{job['id']}/qualifications", headers=stranger), 404)
    assert_error(client.get(f"/v1/jobs/{job['id']}/qualifications", headers=worker), 403)
    assert_error(client.get(f"/v1/jobs/{job['id']}/qualifications?limit=0", headers=requester), 422, "limit")

    reset_url = f"/v1/jobs/{job['id']}/qualifications/{worker_id}"
    assert_error(client.delete(reset_url, headers=requester), 403)
    assert_error(client.delete(reset_url, headers=worker), 403)
    assert_error(client.delete(f"/v1/jobs/{10**9}/qualifications/{worker_id}", headers=operator), 404)
    assert _lease(client, worker, job["id"]).status_code == 204  # refused resets changed nothing
    reset = client.delete(reset_url, headers=operator)
    assert reset.status_code == 204
    assert _row(app, job["id"], worker_id) is None
    (event,) = _audit(app, "qualification_reset")
    assert event.actor_id == _worker_id(app, operator) and event.subject_id == worker_id
    assert event.details["previous_state"] == "failed"
    assert_error(client.delete(reset_url, headers=operator), 404)

    retake = _lease(client, worker, job["id"]).get_json()
    assert retake["kind"] == "qualification"
    retake_items = {item_id for item_id, _ in _entries(app, retake["id"]).values()}
    assert len(retake_items) == 2 and not retake_items & first_items  # unseen golden items only
    assert _take_test(client, worker, retake, right=2)["qualification"] == "passed"
    assert _lease(client, worker, job["id"]).get_json()["kind"] == "task"


def test_a_test_given_back_may_be_retaken_while_unseen_golden_items_last(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    job = _qual_job(client, requester, n=2, pass_mark=0.5, golden=5)
    worker = _worker(app)
    worker_id = _worker_id(app, worker)
    seen: set[int] = set()

    skipped = _lease(client, worker, job["id"]).get_json()
    seen |= {item_id for item_id, _ in _entries(app, skipped["id"]).values()}
    assert client.post(f"/v1/assignments/{skipped['id']}/skip", headers=worker).status_code == 200

    expired = _lease(client, worker, job["id"]).get_json()
    assert expired["kind"] == "qualification"
    items = {item_id for item_id, _ in _entries(app, expired["id"]).values()}
    assert not items & seen
    seen |= items
    with session_scope(get_engine(app)) as session:
        session.execute(
            update(Assignment)
            .where(Assignment.id == expired["id"])
            .values(expires_at=utcnow() - EXPIRY_GRACE - timedelta(seconds=1))
        )
        assert reclaim_expired(session, job["id"], utcnow()) == 1
    assert _row(app, job["id"], worker_id) is not None  # still pending, until the worker asks again

    # One golden item left unseen: too few for a test of two, so no work from this job.
    assert _lease(client, worker, job["id"]).status_code == 204
    assert _row(app, job["id"], worker_id) is None
    assert len(seen) == 4

    # An operator's reset of a test still out revokes it.
    other = _worker(app, "other")
    other_id = _worker_id(app, other)
    out = _lease(client, other, job["id"]).get_json()
    assert client.delete(f"/v1/jobs/{job['id']}/qualifications/{other_id}", headers=operator).status_code == 204
    assert client.get(f"/v1/assignments/{out['id']}", headers=other).get_json()["state"] == "revoked"
    answers = [{"item_id": i["id"], "label": "cat"} for i in out["items"]]
    late = client.post(f"/v1/assignments/{out['id']}/submit", json={"answers": answers}, headers=other)
    assert_error(late, 409)
    assert _lease(client, other, job["id"]).get_json()["kind"] == "qualification"


def test_golden_records_carry_over_within_one_requester_when_allowed(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    earlier = post_job(client, requester, items=20, golden=10, golden_ratio=0.4)
    good, poor = _worker(app, "good"), _worker(app, "poor")
    assert work_through(client, good, earlier["id"], label="cat") > 0  # every golden answer right
    assert work_through(client, poor, earlier["id"], label="dog") > 0  # every golden answer wrong

    carried = _qual_job(client, requester, n=3, pass_mark=0.8, carry_over=True)
    not_carried = _qual_job(client, requester, n=3, pass_mark=0.8, carry_over=False)
    other_requester = bearer(new_key(app, "requester", "other"))
    foreign = _qual_job(client, other_requester, n=3, pass_mark=0.8, carry_over=True)

    lease = _lease(client, good, carried["id"])
    assert lease.status_code == 201 and lease.get_json()["kind"] == "task"
    row = _row(app, carried["id"], _worker_id(app, good))
    assert row is not None and (row.state, row.source, row.assignment_id) == ("passed", "carried", None)
    assert row.total is not None and row.total >= 3 and row.correct == row.total
    (event,) = _audit(app, "qualification_passed")
    assert event.details["source"] == "carried"

    assert _lease(client, poor, carried["id"]).get_json()["kind"] == "qualification"  # record below the mark
    assert _lease(client, good, not_carried["id"]).get_json()["kind"] == "qualification"  # job does not allow it
    assert _lease(client, good, foreign["id"]).get_json()["kind"] == "qualification"  # another requester's job
    assert _row(app, foreign["id"], _worker_id(app, good)).state == "pending"  # type: ignore[union-attr]


def test_bad_qualification_settings_name_the_field(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    def count_jobs() -> int:
        with session_scope(get_engine(app)) as session:
            return int(session.execute(select(func.count()).select_from(Job)).scalar_one())

    bad: list[tuple[Any, str]] = [
        ({"items": 0, "pass_mark": 0.5}, "qualification.items"),
        ({"items": 51, "pass_mark": 0.5}, "qualification.items"),
        ({"items": 2.5, "pass_mark": 0.5}, "qualification.items"),
        ({"items": "3", "pass_mark": 0.5}, "qualification.items"),
        ({"pass_mark": 0.5}, "qualification.items"),
        ({"items": 3, "pass_mark": 0}, "qualification.pass_mark"),
        ({"items": 3, "pass_mark": 1.01}, "qualification.pass_mark"),
        ({"items": 3, "pass_mark": "0.5"}, "qualification.pass_mark"),
        ({"items": 3, "pass_mark": True}, "qualification.pass_mark"),
        ({"items": 3}, "qualification.pass_mark"),
        ({"items": 3, "pass_mark": 0.5, "carry_over": "maybe"}, "qualification.carry_over"),
        ({"items": 3, "pass_mark": 0.5, "bonus": 1}, "qualification.bonus"),
        ([3, 0.5], "qualification"),
        ("strict", "qualification"),
    ]
    before = count_jobs()
    for settings, field in bad:
        assert_error(client.post("/v1/jobs", json=job_body(qualification=settings), headers=requester), 422, field)
    assert count_jobs() == before

    draft = post_job(client, requester, items=10, golden=2, launch=False)
    for settings, field in bad:
        response = client.patch(f"/v1/jobs/{draft['id']}", json={"qualification": settings}, headers=requester)
        assert_error(response, 422, field)
    patched = client.patch(
        f"/v1/jobs/{draft['id']}", json={"qualification": {"items": 3, "pass_mark": 0.5}}, headers=requester
    )
    assert patched.status_code == 200
    assert patched.get_json()["qualification"] == {"items": 3, "pass_mark": 0.5, "carry_over": False}
    assert_error(client.post(f"/v1/jobs/{draft['id']}/launch", headers=requester), 409)  # 2 golden items < 3
    assert client.get(f"/v1/jobs/{draft['id']}", headers=requester).get_json()["state"] == "draft"

    running = post_job(client, requester, items=10, golden=2)
    too_many = client.patch(
        f"/v1/jobs/{running['id']}", json={"qualification": {"items": 3, "pass_mark": 0.5}}, headers=requester
    )
    assert_error(too_many, 422, "qualification.items")
    assert client.get(f"/v1/jobs/{running['id']}", headers=requester).get_json()["qualification"] is None

    # Set on a running job, then taken off again: from the next lease on.
    worker = _worker(app)
    on = client.patch(
        f"/v1/jobs/{running['id']}", json={"qualification": {"items": 2, "pass_mark": 0.5}}, headers=requester
    )
    assert on.status_code == 200
    assert _lease(client, worker, running["id"]).get_json()["kind"] == "qualification"
    off = client.patch(f"/v1/jobs/{running['id']}", json={"qualification": None}, headers=requester)
    assert off.status_code == 200 and off.get_json()["qualification"] is None
    assert _lease(client, _worker(app, "w2"), running["id"]).get_json()["kind"] == "task"


def test_one_workers_concurrent_leases_start_one_test_and_no_task(app: Flask) -> None:
    """PostgreSQL: 16 threads of one worker lease at once (with and without the job id)."""
    client = app.test_client()
    requester = bearer(new_key(app, "requester", "req"))
    job = _qual_job(client, requester, n=3, pass_mark=0.6, golden=12, items=40)
    worker = _worker(app)
    worker_id = _worker_id(app, worker)
    threads, rounds = 16, 4

    def race() -> list[tuple[int, Any]]:
        barrier = threading.Barrier(threads)
        results: list[tuple[int, Any]] = []
        lock = threading.Lock()

        def run(n: int) -> None:
            own = app.test_client()
            barrier.wait()
            for r in range(rounds):
                response = _lease(own, worker, job["id"] if (n + r) % 2 else None)
                with lock:
                    results.append((response.status_code, response.get_json(silent=True)))

        pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=120)
        assert len(results) == threads * rounds
        return results

    results = race()
    leased = [body for status, body in results if status == 201]
    assert {status for status, _ in results} <= {201, 204}
    assert [body["kind"] for body in leased] == ["qualification"]  # one test, no real task
    with session_scope(get_engine(app)) as session:
        assignments = session.execute(
            select(Assignment.id).where(Assignment.job_id == job["id"], Assignment.worker_id == worker_id)
        ).all()
        rows = session.execute(select(Qualification).where(Qualification.job_id == job["id"])).scalars().all()
    assert len(assignments) == 1 and len(rows) == 1 and rows[0].state == "pending"
    assert all(golden for _, golden in _entries(app, leased[0]["id"]).values())

    assert _take_test(client, worker, leased[0], right=3)["qualification"] == "passed"
    after = race()
    tasks = [body for status, body in after if status == 201]
    assert tasks and all(body["kind"] == "task" for body in tasks)
    with session_scope(get_engine(app)) as session:
        status = session.execute(select(Account.status).where(Account.id == worker_id)).scalar_one()
        per_item = session.execute(
            select(AssignmentItem.item_id, func.count())
            .where(AssignmentItem.job_id == job["id"], AssignmentItem.worker_id == worker_id)
            .group_by(AssignmentItem.item_id)
        ).all()
    assert status == "active"
    assert {count for _, count in per_item} == {1}  # never the same item twice
