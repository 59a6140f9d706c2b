"""Invariant 6: a banned worker gets no new work at once, its open leases are revoked, its
answers can be left out, and the freed redundancy is issued again."""

from __future__ import annotations

import threading
from collections import Counter

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from marketplace.db import get_engine, session_scope
from marketplace.models import Answer, Assignment, utcnow
from marketplace.services.bulk import copy_answers
from tests.conftest import bearer, new_key, post_job, work_through


def _me(client: FlaskClient, headers: dict[str, str]) -> int:
    return int(client.get("/v1/me", headers=headers).get_json()["id"])


def _work(client: FlaskClient, headers: dict[str, str], job_id: int, tasks: int = 100) -> int:
    return work_through(client, headers, job_id, "dog", tasks)


def test_ban_stops_work_revokes_leases_and_reissues_them(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    job = post_job(client, requester, items=6, golden=0, overlap=1, items_per_task=3)
    banned, other = bearer(new_key(app, "worker", "b")), bearer(new_key(app, "worker", "o"))
    task = client.post("/v1/assignments", json={}, headers=banned).get_json()
    worker_id = _me(client, banned)
    result = client.post(f"/v1/workers/{worker_id}/ban", json={"reason": "spam on golden items"}, headers=operator)
    assert result.status_code == 200, result.get_json()
    assert result.get_json()["revoked_leases"] == 1
    refused = client.post("/v1/assignments", json={}, headers=banned)
    assert refused.status_code == 403
    assert "golden" not in refused.get_data(as_text=True), "the refusal must not reveal why"
    answers = [{"item_id": i["id"], "label": "cat"} for i in task["items"]]
    assert (
        client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=banned).status_code
        == 409
    )
    assert _work(client, other, job["id"]) == 2, "the revoked items went to the other worker"
    state = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()
    assert state["state"] == "completed" and state["progress"]["answers"] == 6
    assert client.post(f"/v1/workers/{worker_id}/ban", json={"reason": "again"}, headers=operator).status_code == 409


def test_excluded_answers_stay_stored_and_their_redundancy_is_issued_again(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    job = post_job(client, requester, items=4, golden=0, overlap=2, items_per_task=4)
    spammer = bearer(new_key(app, "worker", "spam"))
    honest = [bearer(new_key(app, "worker", f"h{i}")) for i in range(3)]
    assert _work(client, spammer, job["id"]) == 1
    assert _work(client, honest[0], job["id"]) == 1
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["state"] == "completed"
    spammer_id = _me(client, spammer)
    banned = client.post(
        f"/v1/workers/{spammer_id}/ban", json={"reason": "spammer", "exclude_answers": True}, headers=operator
    ).get_json()
    assert banned["excluded_answers"] == 4 and banned["jobs_reopened"] == [job["id"]]
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["state"] == "running"
    assert _work(client, honest[1], job["id"]) == 1, "the freed rounds are issued again"
    assert _work(client, honest[2], job["id"]) == 0, "and only once"
    with session_scope(get_engine(app)) as session:
        rows = session.execute(
            select(Answer.item_id, Answer.worker_id, Answer.excluded).where(Answer.job_id == job["id"])
        ).all()
        frame, _ = copy_answers(session, job["id"])
    assert len(rows) == 12, "excluded answers stay stored"
    assert sum(1 for r in rows if r.excluded) == 4
    assert set(Counter(r.item_id for r in rows if not r.excluded).values()) == {2}
    assert str(spammer_id) not in set(frame["worker"]), "aggregation leaves them out"
    log = client.get("/v1/audit", headers=operator).get_json()
    assert log[-1]["action"] == "ban" and log[-1]["subject_id"] == spammer_id
    assert log[-1]["reason"] == "spammer" and log[-1]["details"]["excluded_answers"] == 4


def test_unban_restores_work_and_everything_is_audited(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    post_job(client, requester, items=10, golden=0, overlap=1, items_per_task=2)
    worker = bearer(new_key(app, "worker", "w"))
    worker_id = _me(client, worker)
    assert client.post(f"/v1/workers/{worker_id}/ban", json={"reason": "check"}, headers=operator).status_code == 200
    assert client.post("/v1/assignments", json={}, headers=worker).status_code == 403
    assert (
        client.delete(f"/v1/workers/{worker_id}/ban", json={"reason": "appeal ok"}, headers=operator).status_code == 200
    )
    assert client.post("/v1/assignments", json={}, headers=worker).status_code == 201
    actions = [(e["action"], e["reason"]) for e in client.get("/v1/audit", headers=operator).get_json()]
    assert actions == [("ban", "check"), ("unban", "appeal ok")]
    assert client.get("/v1/audit", headers=worker).status_code == 403
    assert client.post(f"/v1/workers/{worker_id}/ban", json={}, headers=operator).status_code == 422
    assert client.post("/v1/workers/999999/ban", json={"reason": "x"}, headers=operator).status_code == 404


def test_ban_under_concurrent_leasing_leaves_no_open_lease(app: Flask) -> None:
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    operator = bearer(new_key(app, "operator"))
    job = post_job(client, requester, items=300, golden=0, overlap=1, items_per_task=2)
    worker = bearer(new_key(app, "worker", "busy"))
    worker_id = _me(client, worker)
    stop = threading.Event()
    statuses: list[int] = []

    def lease_forever() -> None:
        c = app.test_client()
        for _ in range(500):
            if stop.is_set():
                return
            statuses.append(c.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).status_code)

    threads = [threading.Thread(target=lease_forever) for _ in range(4)]
    for thread in threads:
        thread.start()
    while len(statuses) < 20:
        threading.Event().wait(0.01)
    banned = client.post(f"/v1/workers/{worker_id}/ban", json={"reason": "r"}, headers=operator)
    banned_at = utcnow()
    assert banned.status_code == 200
    threading.Event().wait(0.3)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    with session_scope(get_engine(app)) as session:
        states = session.execute(
            select(Assignment.state, Assignment.created_at).where(Assignment.worker_id == worker_id)
        ).all()
    assert all(state != "leased" for state, _ in states), "an open lease survived the ban"
    assert all(created <= banned_at for _, created in states), "work was issued after the ban"
    assert statuses[-1] == 403


def test_scoped_bans_revoke_only_in_scope_and_unban_ends_them(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    first = post_job(client, requester, items=4, golden=0, overlap=1, items_per_task=2)
    second = post_job(client, requester, items=4, golden=0, overlap=1, items_per_task=2)
    worker = bearer(new_key(app, "worker", "w"))
    worker_id = _me(client, worker)
    in_first = client.post("/v1/assignments", json={"job_id": first["id"]}, headers=worker).get_json()
    in_second = client.post("/v1/assignments", json={"job_id": second["id"]}, headers=worker).get_json()
    body = {"reason": "sloppy here", "scope": "job", "job_id": first["id"]}
    banned = client.post(f"/v1/workers/{worker_id}/ban", json=body, headers=operator)
    assert banned.status_code == 200 and banned.get_json()["revoked_leases"] == 1
    assert client.get(f"/v1/assignments/{in_first['id']}", headers=worker).get_json()["state"] == "revoked"
    assert client.get(f"/v1/assignments/{in_second['id']}", headers=worker).get_json()["state"] == "leased"
    assert client.get("/v1/me", headers=worker).get_json()["status"] == "active"
    event = client.get("/v1/audit", headers=operator).get_json()[-1]
    assert event["action"] == "ban_job" and event["details"]["scope"] == f"job {first['id']}"
    assert client.delete(f"/v1/workers/{worker_id}/ban", json={"reason": "ok"}, headers=operator).status_code == 200
    assert client.delete(f"/v1/workers/{worker_id}/ban", json={"reason": "ok"}, headers=operator).status_code == 409
    timed = {"reason": "cool off", "scope": "requester", "requester_id": first["id"], "duration_seconds": 600}
    requester_id = client.get("/v1/me", headers=requester).get_json()["id"]
    timed["requester_id"] = requester_id
    assert client.post(f"/v1/workers/{worker_id}/ban", json=timed, headers=operator).status_code == 200
    assert client.get(f"/v1/assignments/{in_second['id']}", headers=worker).get_json()["state"] == "revoked"
    bad = [
        ({"reason": "x", "scope": "job"}, "job_id"),
        ({"reason": "x", "job_id": 1}, "job_id"),
        ({"reason": "x", "scope": "planet"}, "scope"),
        ({"reason": "x", "duration_seconds": 5}, "duration_seconds"),
    ]
    for payload, field in bad:
        response = client.post(f"/v1/workers/{worker_id}/ban", json=payload, headers=operator)
        assert response.status_code == 422 and field in response.get_json()["errors"]["json"], payload


def test_job_and_requester_blocks_keep_the_worker_out_of_exactly_those_jobs(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    first = post_job(client, requester, items=6, golden=0, overlap=1, items_per_task=2)
    second = post_job(client, requester, items=6, golden=0, overlap=1, items_per_task=2)
    other_requester = bearer(new_key(app, "requester", "other"))
    third = post_job(client, other_requester, items=6, golden=0, overlap=1, items_per_task=2)
    worker = bearer(new_key(app, "worker", "w"))
    worker_id = _me(client, worker)

    def lease(job_id: int) -> int:
        return client.post("/v1/assignments", json={"job_id": job_id}, headers=worker).status_code

    body = {"reason": "bad here", "scope": "job", "job_id": first["id"]}
    assert client.post(f"/v1/workers/{worker_id}/ban", json=body, headers=operator).status_code == 200
    assert lease(first["id"]) == 204, "no work in the job it is banned from, and nothing revealing"
    assert lease(second["id"]) == 201
    requester_id = client.get("/v1/me", headers=requester).get_json()["id"]
    body = {"reason": "bad for this requester", "scope": "requester", "requester_id": requester_id}
    assert client.post(f"/v1/workers/{worker_id}/ban", json=body, headers=operator).status_code == 200
    assert lease(second["id"]) == 204
    assert lease(third["id"]) == 201
    taken = client.post("/v1/assignments", json={}, headers=worker)
    assert taken.status_code == 201 and taken.get_json()["job"]["id"] == third["id"], "only the other requester's job"
    assert client.delete(f"/v1/workers/{worker_id}/ban", json={"reason": "ok"}, headers=operator).status_code == 200
    assert lease(first["id"]) == 201


def test_a_cooldown_ends_by_itself(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    from datetime import timedelta

    from marketplace.services.bans import ban_worker

    job = post_job(client, requester, items=6, golden=0, overlap=1, items_per_task=2)
    worker = bearer(new_key(app, "worker", "w"))
    worker_id = _me(client, worker)
    with session_scope(get_engine(app)) as session:
        ban_worker(session, worker_id, None, "cool off", False, until=utcnow() + timedelta(seconds=120))
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).status_code == 204
    with session_scope(get_engine(app)) as session:
        from sqlalchemy import update as sql_update

        from marketplace.models import WorkerBlock

        session.execute(sql_update(WorkerBlock).values(until=utcnow() - timedelta(seconds=1)))
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).status_code == 201
