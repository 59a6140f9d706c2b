"""Authentication and object-level authorization: every object only for those it belongs to."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from marketplace.models import Account, Answer, Assignment, Item, Job
from tests.conftest import bearer, job_body, new_key, post_job
from tests.test_api_bad_input import assert_error, count_rows, snapshot

ANSWERS = {"answers": [{"item_id": 1, "label": "cat"}]}


def _endpoints(job_id: int, assignment_id: int) -> list[tuple[str, str, Any]]:
    """(method, path, json) for every authenticated endpoint."""
    return [
        ("POST", "/v1/jobs", job_body()),
        ("GET", "/v1/jobs", None),
        ("GET", f"/v1/jobs/{job_id}", None),
        ("POST", f"/v1/jobs/{job_id}/items", [{"data": {"url": "x"}}]),
        ("POST", f"/v1/jobs/{job_id}/launch", None),
        ("POST", f"/v1/jobs/{job_id}/pause", None),
        ("POST", f"/v1/jobs/{job_id}/cancel", None),
        ("GET", f"/v1/jobs/{job_id}/results", None),
        ("GET", f"/v1/jobs/{job_id}/results?format=csv", None),
        ("GET", f"/v1/jobs/{job_id}/workers", None),
        ("POST", f"/v1/jobs/{job_id}/aggregate", None),
        ("POST", "/v1/assignments", {}),
        ("GET", f"/v1/assignments/{assignment_id}", None),
        ("POST", f"/v1/assignments/{assignment_id}/submit", ANSWERS),
        ("POST", f"/v1/assignments/{assignment_id}/skip", None),
        ("GET", "/v1/me", None),
        ("POST", "/v1/accounts", {"role": "worker", "name": "x"}),
        ("GET", "/v1/workers/1", None),
        ("GET", f"/v1/jobs/{job_id}/items", None),
        ("GET", f"/v1/jobs/{job_id}/items/1", None),
        ("PATCH", f"/v1/jobs/{job_id}", {"title": "renamed"}),
    ]


def _call(client: FlaskClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return client.open(path, method=method, json=body, headers=headers)


def _setup(app: Flask, client: FlaskClient, requester: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    job = post_job(client, requester, items=10, golden=2, items_per_task=3)
    worker = bearer(new_key(app, "worker", "w"))
    task = client.post("/v1/assignments", json={}, headers=worker).get_json()
    return job, task


def test_no_key_or_a_wrong_key_is_401_everywhere(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job, task = _setup(app, client, requester)
    before = snapshot(app)
    key = requester["Authorization"].split(" ", 1)[1]
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Bearer mk_not-a-real-key"},
        {"Authorization": f"Basic {key}"},
        {"Authorization": key},
        {"Authorization": f"Bearer {key}x"},
    ]
    for method, path, body in _endpoints(job["id"], task["id"]):
        for headers in bad_headers:
            response = _call(client, method, path, body, headers)
            assert_error(response, 401)
    assert snapshot(app) == before


def test_roles_are_enforced_with_403(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job, task = _setup(app, client, requester)
    worker = bearer(new_key(app, "worker", "w2"))
    before = snapshot(app)
    requester_only = {"/v1/jobs", f"/v1/jobs/{job['id']}/items"}
    for method, path, body in _endpoints(job["id"], task["id"]):
        if path.startswith("/v1/jobs"):
            assert_error(_call(client, method, path, body, worker), 403)
        if path.startswith("/v1/assignments"):
            assert_error(_call(client, method, path, body, requester), 403)
        if path.startswith(("/v1/accounts", "/v1/workers")):
            assert_error(_call(client, method, path, body, requester), 403)
            assert_error(_call(client, method, path, body, worker), 403)
    operator = bearer(new_key(app, "operator", "op"))
    for path in requester_only:
        body = job_body() if path == "/v1/jobs" else [{"data": {"url": "x"}}]
        assert_error(client.post(path, json=body, headers=operator), 403)
    assert_error(client.post("/v1/assignments", json={}, headers=operator), 403)
    assert snapshot(app) == {**before, "Account": before["Account"] + 1}


def test_a_requester_cannot_touch_another_requesters_job(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(client, requester, items=6, golden=2)
    other = bearer(new_key(app, "requester", "other"))
    before = snapshot(app)
    missing = 987654
    theirs, absent = _endpoints(job["id"], 1)[2:11], _endpoints(missing, 1)[2:11]
    assert len(theirs) == 9 and all(str(job["id"]) in path for _, path, _ in theirs)
    for (method, path, body), (_, missing_path, _) in zip(theirs, absent, strict=True):
        body_theirs = assert_error(_call(client, method, path, body, other), 404)
        # Someone else's job looks exactly like a job that does not exist.
        nothing = assert_error(_call(client, method, missing_path, body, other), 404)
        assert body_theirs["message"].replace(str(job["id"]), "N") == nothing["message"].replace(str(missing), "N")
    assert [j["id"] for j in client.get("/v1/jobs", headers=other).get_json()] == []
    assert snapshot(app) == before
    view = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()
    assert view["state"] == "running"
    assert view["progress"]["items"] == 6
    assert count_rows(app, Item, job_id=job["id"]) == 8
    assert client.post("/v1/assignments", json={}, headers=bearer(new_key(app, "worker", "w"))).status_code == 201


def test_a_worker_cannot_touch_another_workers_assignment(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    post_job(client, requester, items=10, golden=2, items_per_task=3)
    owner = bearer(new_key(app, "worker", "owner"))
    thief = bearer(new_key(app, "worker", "thief"))
    task = client.post("/v1/assignments", json={}, headers=owner).get_json()
    answers = {"answers": [{"item_id": item["id"], "label": "cat"} for item in task["items"]]}
    url = f"/v1/assignments/{task['id']}"
    assert_error(client.get(url, headers=thief), 404)
    assert_error(client.post(f"{url}/submit", json=answers, headers={**thief, "Idempotency-Key": "k"}), 404)
    assert_error(client.post(f"{url}/skip", headers=thief), 404)
    assert count_rows(app, Answer) == 0
    assert count_rows(app, Assignment, state="leased") == 1
    mine = client.get(url, headers=owner)
    assert mine.status_code == 200 and mine.get_json()["state"] == "leased"
    done = client.post(f"{url}/submit", json=answers, headers={**owner, "Idempotency-Key": "k"})
    assert done.status_code == 200
    # Even the replay of a submitted assignment stays the owner's.
    assert_error(client.post(f"{url}/submit", json=answers, headers={**thief, "Idempotency-Key": "k"}), 404)
    assert_error(client.get(url, headers=thief), 404)


def test_an_operator_reads_any_job_and_creates_accounts(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    other = bearer(new_key(app, "requester", "other"))
    job_a = post_job(client, requester, items=4, golden=1)
    job_b = post_job(client, other, items=4, golden=1, launch=False)
    for job in (job_a, job_b):
        view = client.get(f"/v1/jobs/{job['id']}", headers=operator)
        assert view.status_code == 200
        assert view.get_json()["progress"]["items"] == 4
        assert client.get(f"/v1/jobs/{job['id']}/results", headers=operator).status_code == 200
    assert {j["id"] for j in client.get("/v1/jobs", headers=operator).get_json()} == {job_a["id"], job_b["id"]}
    paused = client.post(f"/v1/jobs/{job_a['id']}/pause", headers=operator)
    assert paused.status_code == 200 and paused.get_json()["state"] == "paused"

    accounts_before = count_rows(app, Account)
    created = client.post("/v1/accounts", json={"role": "worker", "name": "new worker"}, headers=operator)
    assert created.status_code == 201
    account = created.get_json()
    assert set(account) == {"id", "role", "name", "key"}
    assert (account["role"], account["name"]) == ("worker", "new worker")
    assert count_rows(app, Account) == accounts_before + 1
    me = client.get("/v1/me", headers=bearer(account["key"]))
    assert me.status_code == 200
    assert (me.get_json()["id"], me.get_json()["role"]) == (account["id"], "worker")
    assert client.post("/v1/jobs", json=job_body(), headers=bearer(account["key"])).status_code == 403
    made = client.post("/v1/accounts", json={"role": "requester", "name": "r2"}, headers=operator).get_json()
    assert client.post("/v1/jobs", json=job_body(), headers=bearer(made["key"])).status_code == 201
    assert made["key"] != account["key"]
    for caller in (requester, bearer(account["key"]), bearer(made["key"])):
        assert_error(client.post("/v1/accounts", json={"role": "operator", "name": "me"}, headers=caller), 403)
    assert count_rows(app, Account) == accounts_before + 2
    assert count_rows(app, Job) == 3
