"""Worker skills carried over from a requester's other jobs: opt-in, and only its own jobs."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from marketplace.db import get_engine, session_scope
from marketplace.services.aggregating import aggregate_job
from tests.conftest import bearer, new_key, post_job


def _work(client: FlaskClient, worker: dict[str, str], job_id: int, label: str) -> None:
    """Lease and submit until no work is left, answering `label` on real items and 'cat' (the
    golden answer) on golden ones when `label` is the truthful worker's 'bird'."""
    for _ in range(50):
        lease = client.post("/v1/assignments", json={"job_id": job_id}, headers=worker)
        if lease.status_code != 201:
            return
        task = lease.get_json()
        answers = [
            {"item_id": i["id"], "label": "cat" if label == "bird" and "img-g" in i["data"]["url"] else label}
            for i in task["items"]
        ]
        done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker)
        assert done.status_code == 200, done.get_json()


def _labels(app: Flask, client: FlaskClient, requester: dict[str, str], job_id: int) -> set[str]:
    with session_scope(get_engine(app)) as session:
        aggregate_job(session, job_id)
    rows = client.get(f"/v1/jobs/{job_id}/results?limit=1000", headers=requester).get_json()["results"]
    return {r["label"] for r in rows}


def _standoff(client: FlaskClient, requester: dict[str, str], good: Any, bad: Any) -> int:
    """A job without golden items where the two workers disagree on every item."""
    job = post_job(client, requester, items=20, golden=0, overlap=2, golden_ratio=0.0, aggregation="auto")
    _work(client, good, job["id"], "bird")
    _work(client, bad, job["id"], "dog")
    return int(job["id"])


def test_a_requesters_earlier_jobs_tell_which_worker_to_trust(app: Flask) -> None:
    client = app.test_client()
    alice = bearer(new_key(app, "requester", "alice"))
    good, bad = bearer(new_key(app, "worker", "good")), bearer(new_key(app, "worker", "bad"))
    first = post_job(client, alice, items=10, golden=20, overlap=2, golden_ratio=0.5, aggregation="auto")
    _work(client, good, first["id"], "bird")  # right on every golden item
    _work(client, bad, first["id"], "dog")  # wrong on every golden item
    _labels(app, client, alice, first["id"])  # stores both workers' quality on alice's job

    switched = client.patch("/v1/me", json={"carry_over_skills": True}, headers=alice)
    assert switched.status_code == 200 and switched.get_json()["carry_over_skills"] is True
    assert _labels(app, client, alice, _standoff(client, alice, good, bad)) == {"bird"}

    # Without the opt-in nothing carries over: a standoff goes to the first label listed.
    bob = bearer(new_key(app, "requester", "bob"))
    assert _labels(app, client, bob, _standoff(client, bob, good, bad)) == {"dog"}
    # carol opted in, but alice's jobs are not hers: her standoff knows nothing.
    carol = bearer(new_key(app, "requester", "carol"))
    assert client.patch("/v1/me", json={"carry_over_skills": True}, headers=carol).status_code == 200
    assert _labels(app, client, carol, _standoff(client, carol, good, bad)) == {"dog"}


def test_only_requesters_set_it_and_the_body_is_checked(app: Flask) -> None:
    client = app.test_client()
    requester = bearer(new_key(app, "requester", "r"))
    worker = bearer(new_key(app, "worker", "w"))
    assert client.get("/v1/me", headers=requester).get_json()["carry_over_skills"] is False
    assert client.patch("/v1/me", json={"carry_over_skills": True}, headers=worker).status_code == 403
    assert "carry_over_skills" not in client.get("/v1/me", headers=worker).get_json()
    bad = client.patch("/v1/me", json={"carry_over_skills": "maybe"}, headers=requester)
    assert bad.status_code == 422 and "carry_over_skills" in bad.get_json()["errors"]["json"]
    missing = client.patch("/v1/me", json={}, headers=requester)
    assert missing.status_code == 422 and "carry_over_skills" in missing.get_json()["errors"]["json"]
    assert client.get("/v1/me", headers=requester).get_json()["carry_over_skills"] is False
