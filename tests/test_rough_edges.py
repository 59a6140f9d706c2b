"""Rough edges a new user hit (issue 10, part 2): renaming a job, golden accuracy as the raw
share, and a progress view that says why a job is stuck. PostgreSQL."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from marketplace.db import get_engine, session_scope
from marketplace.services.aggregating import aggregate_job
from tests.conftest import bearer, new_key, post_job, work_through
from tests.test_api_bad_input import assert_error


def _me_id(client: FlaskClient, headers: dict[str, str]) -> int:
    return int(client.get("/v1/me", headers=headers).get_json()["id"])


def test_patch_changes_title_and_instructions_and_leases_show_them(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(client, requester, items=6, golden=1, items_per_task=2)
    url = f"/v1/jobs/{job['id']}"
    changed = client.patch(
        url, json={"title": "Animals, v2", "instructions": "Pick the largest animal."}, headers=requester
    )
    assert changed.status_code == 200, changed.get_json()
    assert (changed.get_json()["title"], changed.get_json()["instructions"]) == (
        "Animals, v2",
        "Pick the largest animal.",
    )
    worker = bearer(new_key(app, "worker", "w"))
    task = client.post("/v1/assignments", json={}, headers=worker).get_json()
    assert (task["job"]["title"], task["job"]["instructions"]) == ("Animals, v2", "Pick the largest animal.")
    for body, field in [
        ({"title": ""}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"instructions": None}, "instructions"),
        ({"instructions": "x" * 20_001}, "instructions"),
        ({"title": "a\x00b"}, "title"),
    ]:
        assert_error(client.patch(url, json=body, headers=requester), 422, field)
    other = bearer(new_key(app, "requester", "other"))
    assert_error(client.patch(url, json={"title": "mine now"}, headers=other), 404)
    assert_error(client.patch(url, json={"title": "mine now"}, headers=worker), 403)
    assert client.get(url, headers=requester).get_json()["title"] == "Animals, v2"


def test_golden_accuracy_is_the_raw_share_and_the_smoothed_estimate_has_its_own_field(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    """A worker who got 4 golden items of 4 right sees 1.0, not (4 + 1) / (4 + 2) = 0.833."""
    job = post_job(client, requester, items=3, golden=4, overlap=1, items_per_task=5, golden_ratio=0.8)
    worker = bearer(new_key(app, "worker", "w"))
    assert work_through(client, worker, job["id"], label="cat", limit=1) == 1  # 4 golden (all "cat") + 1 real
    with session_scope(get_engine(app)) as session:
        aggregate_job(session, job["id"])
    expected = {"golden_seen": 4, "golden_correct": 4, "golden_accuracy": 1.0, "golden_accuracy_smoothed": 0.8333}

    def picked(row: dict[str, Any]) -> dict[str, Any]:
        return {name: row[name] for name in expected}

    (on_job,) = client.get(f"/v1/jobs/{job['id']}/workers", headers=requester).get_json()
    assert picked(on_job) == expected
    (ranked,) = client.get(f"/v1/workers?job_id={job['id']}", headers=requester).get_json()
    assert picked(ranked) == expected
    (day,) = client.get(f"/v1/workers/{_me_id(client, worker)}/quality", headers=requester).get_json()
    assert picked(day) == expected
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["quality"]["mean_golden_accuracy"] == 1.0


def test_progress_says_a_job_waits_for_workers_when_no_active_worker_may_take_its_free_work(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    """The walk that found it: a ban with excluded answers reissued rounds that both remaining
    workers had already answered; the job sat at done 0.6667, running, and they got 204."""
    operator = bearer(new_key(app, "operator", "op"))
    job = post_job(client, requester, items=4, golden=0, overlap=3, items_per_task=4, golden_ratio=0.0)
    url = f"/v1/jobs/{job['id']}"
    crowd = [bearer(new_key(app, "worker", f"w{i}")) for i in range(3)]
    for worker in crowd:
        assert client.get(url, headers=requester).get_json()["progress"]["stuck"] is None
        assert work_through(client, worker, job["id"]) == 1
    assert client.get(url, headers=requester).get_json()["state"] == "completed"
    assert client.get(url, headers=requester).get_json()["progress"]["stuck"] is None
    spammer = _me_id(client, crowd[2])
    ban = {"reason": "spam", "exclude_answers": True, "scope": "job", "job_id": job["id"]}
    assert client.post(f"/v1/workers/{spammer}/ban", json=ban, headers=operator).status_code == 200
    for worker in crowd:
        assert client.post("/v1/assignments", json={}, headers=worker).status_code == 204
    view = client.get(url, headers=requester).get_json()
    assert (view["state"], view["progress"]["done"], view["progress"]["answers_free"]) == ("running", 0.6667, 4)
    assert view["progress"]["stuck"] == "waiting_for_workers"
    newcomer = bearer(new_key(app, "worker", "new"))  # someone who may take the work: not stuck
    assert client.get(url, headers=requester).get_json()["progress"]["stuck"] is None
    assert work_through(client, newcomer, job["id"]) == 1
    view = client.get(url, headers=requester).get_json()
    assert (view["state"], view["progress"]["stuck"]) == ("completed", None)


def test_progress_counts_banned_and_blocked_workers_out(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    operator = bearer(new_key(app, "operator", "op"))
    job = post_job(client, requester, items=2, golden=0, overlap=1, items_per_task=2, golden_ratio=0.0)
    url = f"/v1/jobs/{job['id']}"
    banned, kept = bearer(new_key(app, "worker", "b")), bearer(new_key(app, "worker", "k"))
    assert client.get(url, headers=requester).get_json()["progress"]["stuck"] is None
    ban = {"reason": "x"}
    assert client.post(f"/v1/workers/{_me_id(client, banned)}/ban", json=ban, headers=operator).status_code == 200
    assert client.get(url, headers=requester).get_json()["progress"]["stuck"] is None  # `kept` may still work
    block = {"reason": "x", "scope": "requester", "requester_id": _me_id(client, requester)}
    assert client.post(f"/v1/workers/{_me_id(client, kept)}/ban", json=block, headers=operator).status_code == 200
    assert client.get(url, headers=requester).get_json()["progress"]["stuck"] == "waiting_for_workers"
    assert client.post(f"/v1/jobs/{job['id']}/pause", headers=requester).status_code == 200
    assert client.get(url, headers=requester).get_json()["progress"]["stuck"] is None  # paused: not waiting
