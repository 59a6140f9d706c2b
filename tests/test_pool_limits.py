"""Leases a worker cannot hoard or lose: a retried lease returns the same task, open leases are
capped per worker and per job, and a lease says what the task pays."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from marketplace.db import get_engine, session_scope
from marketplace.models import Assignment
from tests.conftest import bearer, new_key, post_job
from tests.test_api_bad_input import assert_error

Headers = dict[str, str]


def _open_leases(app: Flask) -> int:
    with session_scope(get_engine(app)) as session:
        return int(session.execute(select(func.count()).where(Assignment.state == "leased")).scalar_one())


@pytest.mark.parametrize("hot", [True, False], ids=["hot", "flask"])
def test_a_retried_lease_with_its_key_returns_the_same_task(
    app: Flask, client: FlaskClient, requester: Headers, hot: bool
) -> None:
    """A server killed after committing a lease the client never received held its items and
    budget until expiry; a client that retries with the same Idempotency-Key gets that task."""
    app.config["HOT_PATH"] = hot
    job = post_job(client, requester, items=20, golden=2, items_per_task=3)
    worker = bearer(new_key(app, "worker"))
    first = client.post("/v1/assignments", json={"job_id": job["id"]}, headers={**worker, "Idempotency-Key": "a"})
    again = client.post("/v1/assignments", json={"job_id": job["id"]}, headers={**worker, "Idempotency-Key": "a"})
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    other = client.post("/v1/assignments", json={"job_id": job["id"]}, headers={**worker, "Idempotency-Key": "b"})
    assert other.status_code == 201 and other.get_json()["id"] != first.get_json()["id"]
    assert _open_leases(app) == 2
    task = first.get_json()
    answers = {"answers": [{"item_id": i["id"], "label": "cat"} for i in task["items"]]}
    assert client.post(f"/v1/assignments/{task['id']}/submit", json=answers, headers=worker).status_code == 200
    later = client.post("/v1/assignments", json={}, headers={**worker, "Idempotency-Key": "a"}).get_json()
    assert (later["id"], later["state"]) == (task["id"], "submitted")  # the same task, as it is now
    thief = bearer(new_key(app, "worker", "thief"))  # keys are the worker's own: another worker's key leases anew
    theirs = client.post("/v1/assignments", json={"job_id": job["id"]}, headers={**thief, "Idempotency-Key": "a"})
    assert theirs.status_code == 201 and theirs.get_json()["id"] not in (task["id"], other.get_json()["id"])
    assert_error(client.post("/v1/assignments", json={}, headers={**worker, "Idempotency-Key": ""}), 422)


def test_concurrent_retries_of_one_lease_make_one_task(app: Flask, client: FlaskClient, requester: Headers) -> None:
    job = post_job(client, requester, items=40, golden=0, golden_ratio=0.0, items_per_task=3)
    worker = bearer(new_key(app, "worker"))
    got: list[Any] = []

    def lease() -> None:
        response = app.test_client().post(
            "/v1/assignments", json={"job_id": job["id"]}, headers={**worker, "Idempotency-Key": "same"}
        )
        got.append((response.status_code, response.get_json()["id"]))

    threads = [threading.Thread(target=lease) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({g for g in got}) == 1 and got[0][0] == 201
    assert _open_leases(app) == 1


def test_a_worker_holds_at_most_its_limit_of_open_leases(app: Flask, client: FlaskClient, requester: Headers) -> None:
    """One worker took 600 leases in 2.5 s, and three accounts held a whole job while an honest
    worker got 204. Open leases are capped: 2 of one job, 3 in all (settings.LeaseLimits)."""
    first = post_job(client, requester, items=30, golden=0, golden_ratio=0.0, items_per_task=2)
    second = post_job(client, requester, items=30, golden=0, golden_ratio=0.0, items_per_task=2)
    hoarder, honest = bearer(new_key(app, "worker", "hoarder")), bearer(new_key(app, "worker", "honest"))
    leases = [client.post("/v1/assignments", json={"job_id": first["id"]}, headers=hoarder) for _ in range(2)]
    assert [r.status_code for r in leases] == [201, 201]
    assert client.post("/v1/assignments", json={"job_id": first["id"]}, headers=hoarder).status_code == 204
    assert client.post("/v1/assignments", json={}, headers=hoarder).status_code == 201  # from the other job
    refused = assert_error(client.post("/v1/assignments", json={"job_id": second["id"]}, headers=hoarder), 409)
    assert "3 open tasks" in refused["message"]
    assert client.post("/v1/assignments", json={"job_id": first["id"]}, headers=honest).status_code == 201
    task = leases[0].get_json()
    answers = {"answers": [{"item_id": i["id"], "label": "cat"} for i in task["items"]]}
    assert client.post(f"/v1/assignments/{task['id']}/submit", json=answers, headers=hoarder).status_code == 200
    assert client.post("/v1/assignments", json={"job_id": second["id"]}, headers=hoarder).status_code == 201


def test_a_lease_says_what_the_task_pays_and_the_task_read_back_says_what_was_answered(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = post_job(
        client,
        requester,
        items=10,
        golden=2,
        items_per_task=3,
        pricing={"model": "per_item", "cents": 4},
        bonus={"golden_accuracy_above": 0.8, "cents_per_item": 1},
    )
    worker = bearer(new_key(app, "worker"))
    task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).get_json()
    assert task["pay"] == {"currency": "USD", "item_cents": 4, "task_cents": 12, "bonus_item_cents": 1}
    url = f"/v1/assignments/{task['id']}"
    before = client.get(url, headers=worker).get_json()
    assert (before["submitted_answers"], before["submitted_at"], before["pay"]) == ([], None, task["pay"])
    answers = [
        {"item_id": i["id"], "label": label} for i, label in zip(task["items"], ["cat", "dog", "bird"], strict=True)
    ]
    assert client.post(f"{url}/submit", json={"answers": answers}, headers=worker).status_code == 200
    after = client.get(url, headers=worker).get_json()
    assert after["submitted_answers"] == answers and after["submitted_at"] is not None
    skipped = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).get_json()
    gave_back = client.post(f"/v1/assignments/{skipped['id']}/skip", headers=worker).get_json()
    assert gave_back["state"] == "skipped" and gave_back["submitted_at"] is None
    assert client.get(f"/v1/assignments/{skipped['id']}", headers=worker).get_json()["submitted_at"] is None


def test_racing_leases_of_one_worker_exceed_its_cap_by_at_most_those_in_flight(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    """One statement counts the worker's open leases from a snapshot taken before its row lock:
    leases racing at once may each see the others not yet committed, so the cap can be passed by
    at most the number in flight; once they commit, every further lease is refused (README)."""
    job = post_job(client, requester, items=200, golden=0, golden_ratio=0.0, items_per_task=2)
    app.config.update(MAX_OPEN_LEASES_PER_JOB=1000)  # the global cap alone
    worker = bearer(new_key(app, "worker"))
    got: list[int] = []

    def lease() -> None:
        own = app.test_client()
        for _ in range(5):
            got.append(own.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).status_code)

    threads = [threading.Thread(target=lease) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 3 <= got.count(201) <= 3 + 4 - 1, got
    assert _open_leases(app) == got.count(201)
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).status_code == 409


def test_a_job_asks_for_at_most_the_operators_number_of_answers(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    """A PATCH to overlap 47 on a 50,000-item job (2.35M slots) made every lease on every job slow;
    an operator bounds items x overlap per job (MAX_JOB_ANSWERS)."""
    app.config["MAX_JOB_ANSWERS"] = 30
    job = post_job(client, requester, items=10, golden=2, overlap=3)
    refused = assert_error(client.patch(f"/v1/jobs/{job['id']}", json={"overlap": 4}, headers=requester), 422)
    assert "more than this marketplace's limit of 30" in refused["errors"]["json"]["overlap"][0]
    more = [{"data": {"url": "one-more.jpg"}}]
    assert_error(client.post(f"/v1/jobs/{job['id']}/items", json=more, headers=requester), 422, "_body")
    view = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()
    assert (view["overlap"], view["progress"]["items"], view["progress"]["answers_free"]) == (3, 10, 30)
    golden = [{"data": {"url": "gold.jpg"}, "answer": "cat"}]  # golden items ask for no answers
    assert client.post(f"/v1/jobs/{job['id']}/items", json=golden, headers=requester).status_code == 201


def test_a_body_too_long_for_its_call_is_refused_before_it_is_read(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    """A 53 MiB submit took 21.7 s to reach its 422 and left the server at 1 GB: each call now
    takes bodies up to its own limit, refused by Content-Length (or, chunked, at the limit)."""
    app.config.update(SUBMIT_MAX_BYTES=2000, BODY_MAX_BYTES=1000)
    job = post_job(client, requester, items=10, golden=0, golden_ratio=0.0, items_per_task=2)
    worker = bearer(new_key(app, "worker"))
    task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).get_json()
    url = f"/v1/assignments/{task['id']}/submit"
    huge = {"answers": [{"item_id": i["id"], "label": "cat" * 500} for i in task["items"]]}
    body = assert_error(client.post(url, json=huge, headers=worker), 413, "Content-Length")
    assert "this call takes at most 2000" in body["message"]
    chunked = client.post(
        url,
        input_stream=io.BytesIO(json.dumps(huge).encode()),
        headers={**worker, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_base={"wsgi.input_terminated": True},  # as gunicorn says of a chunked body
    )
    assert_error(chunked, 413)
    big_patch = {"instructions": "x" * 2000}
    assert_error(client.patch(f"/v1/jobs/{job['id']}", json=big_patch, headers=requester), 413, "Content-Length")
    assert _open_leases(app) == 1  # nothing stored, the task still open
    fine = {"answers": [{"item_id": i["id"], "label": "cat"} for i in task["items"]]}
    assert client.post(url, json=fine, headers=worker).status_code == 200
