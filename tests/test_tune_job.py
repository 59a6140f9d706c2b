"""PATCH /v1/jobs/{id}: tuning redundancy on a running or finished job."""

from __future__ import annotations

from collections import Counter

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from marketplace.db import get_engine, session_scope
from marketplace.models import Answer, Slot
from tests.conftest import bearer, new_key, post_job, work_through


def _drain(client: FlaskClient, headers: dict[str, str], job_id: int) -> int:
    return work_through(client, headers, job_id, "dog", 50)


def _per_item(app: Flask, job_id: int) -> Counter[int]:
    with session_scope(get_engine(app)) as session:
        items = session.execute(
            select(Answer.item_id).where(Answer.job_id == job_id, Answer.is_golden.is_(False))
        ).scalars()
        return Counter(items)


def test_raising_overlap_reopens_a_finished_job_and_fills_the_new_rounds(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(client, requester, items=4, golden=0, overlap=1, items_per_task=4)
    workers = [bearer(new_key(app, "worker", f"w{i}")) for i in range(3)]
    _drain(client, workers[0], job["id"])
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["state"] == "completed"
    tuned = client.patch(f"/v1/jobs/{job['id']}", json={"overlap": 3}, headers=requester)
    assert tuned.status_code == 200, tuned.get_json()
    assert tuned.get_json()["state"] == "running" and tuned.get_json()["overlap"] == 3
    for worker in workers:
        _drain(client, worker, job["id"])
    assert set(_per_item(app, job["id"]).values()) == {3}
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["state"] == "completed"


def test_lowering_overlap_keeps_answers_and_stops_issuing_dropped_rounds(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    job = post_job(client, requester, items=4, golden=0, overlap=3, items_per_task=4)
    first = bearer(new_key(app, "worker", "first"))
    _drain(client, first, job["id"])
    tuned = client.patch(f"/v1/jobs/{job['id']}", json={"overlap": 1, "items_per_task": 2}, headers=operator)
    assert tuned.status_code == 200
    assert tuned.get_json()["state"] == "completed", "nothing left to issue"
    with session_scope(get_engine(app)) as session:
        assert session.execute(select(Slot).where(Slot.job_id == job["id"])).first() is None
    assert _drain(client, bearer(new_key(app, "worker", "second")), job["id"]) == 0
    assert set(_per_item(app, job["id"]).values()) == {1}, "answers already given are kept"


def test_bad_or_foreign_tuning_is_refused_and_changes_nothing(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(client, requester, items=2, golden=0)
    cases = [
        ({"overlap": 0}, "overlap"),
        ({"overlap": "3"}, "overlap"),
        ({"golden_ratio": 2}, "golden_ratio"),
        ({"aggregation": "nope"}, "aggregation"),
        ({"bogus": 1}, "bogus"),
        ({}, "_schema"),
    ]
    for body, field in cases:
        response = client.patch(f"/v1/jobs/{job['id']}", json=body, headers=requester)
        assert response.status_code == 422, body
        assert field in response.get_json()["errors"]["json"], response.get_json()
    other = bearer(new_key(app, "requester", "other"))
    assert client.patch(f"/v1/jobs/{job['id']}", json={"overlap": 5}, headers=other).status_code == 404
    worker = bearer(new_key(app, "worker", "w"))
    assert client.patch(f"/v1/jobs/{job['id']}", json={"overlap": 5}, headers=worker).status_code == 403
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["overlap"] == 3


def test_a_lease_out_when_overlap_drops_does_not_bring_its_round_back(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from marketplace.models import Assignment, utcnow
    from marketplace.pool.release import EXPIRY_GRACE

    job = post_job(client, requester, items=2, golden=0, overlap=2, items_per_task=2)
    first, second = bearer(new_key(app, "worker", "a")), bearer(new_key(app, "worker", "b"))
    _drain(client, first, job["id"])  # round 0 of both items
    task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=second).get_json()  # round 1, left open
    assert client.patch(f"/v1/jobs/{job['id']}", json={"overlap": 1}, headers=requester).status_code == 200
    with session_scope(get_engine(app)) as session:
        session.execute(
            update(Assignment)
            .where(Assignment.id == task["id"])
            .values(expires_at=utcnow() - EXPIRY_GRACE - timedelta(seconds=1))
        )
    third = bearer(new_key(app, "worker", "c"))
    assert _drain(client, third, job["id"]) == 0, "the dropped round was not reissued"
    with session_scope(get_engine(app)) as session:
        assert session.execute(select(Slot).where(Slot.job_id == job["id"])).first() is None
