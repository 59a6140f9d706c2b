"""Workers' assignments over HTTP: lease, submit once, skip, expiry and reissue."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from marketplace.db import get_engine, session_scope
from marketplace.models import Answer, Assignment, utcnow
from marketplace.pool.release import EXPIRY_GRACE
from tests.conftest import bearer, new_key, post_job
from tests.test_api_bad_input import assert_error, count_rows, error_fields


def _worker(app: Flask, name: str = "w") -> dict[str, str]:
    return bearer(new_key(app, "worker", name))


def _lease(client: FlaskClient, worker: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/v1/assignments", json=body, headers=worker)
    assert response.status_code == 201, (response.status_code, response.get_data(as_text=True))
    return response.get_json()  # type: ignore[no-any-return]


def _answers(task: dict[str, Any], label: str = "cat") -> dict[str, Any]:
    return {"answers": [{"item_id": item["id"], "label": label} for item in task["items"]]}


def _submit(
    client: FlaskClient, worker: dict[str, str], task: dict[str, Any], body: Any, key: str | None = None
) -> Any:
    headers = dict(worker)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"/v1/assignments/{task['id']}/submit", json=body, headers=headers)


def _urls(task: dict[str, Any]) -> set[str]:
    return {item["data"]["url"] for item in task["items"]}


def _set_expiry(app: Flask, assignment_id: int, expires_at: datetime) -> None:
    with session_scope(get_engine(app)) as session:
        session.execute(update(Assignment).where(Assignment.id == assignment_id).values(expires_at=expires_at))


def test_lease_has_the_documented_shape(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job = post_job(client, requester, items=10, golden=3, items_per_task=4, golden_ratio=0.25, lease_seconds=120)
    worker = _worker(app)
    before = utcnow()
    task = _lease(client, worker)
    assert set(task) == {"id", "kind", "state", "items", "expires_at", "job", "pay"}
    assert task["pay"] == {"currency": "USD", "item_cents": 2, "task_cents": 8, "bonus_item_cents": 0}
    assert task["kind"] == "task"
    assert task["state"] == "leased"
    assert len(task["items"]) == 4
    for item in task["items"]:
        assert set(item) == {"id", "data"}
        assert isinstance(item["id"], int)
        assert set(item["data"]) == {"url", "w", "h"}
    assert len({item["id"] for item in task["items"]}) == 4
    assert task["job"] == {
        "id": job["id"],
        "title": job["title"],
        "instructions": job["instructions"],
        "annotation": job["annotation"],
    }
    expires = datetime.fromisoformat(task["expires_at"])
    assert before + timedelta(seconds=110) < expires < utcnow() + timedelta(seconds=130)
    again = client.get(f"/v1/assignments/{task['id']}", headers=worker)
    assert again.status_code == 200
    read_back = again.get_json()
    pending = ("decision", "decision_reason", "paid_cents", "submitted_at")
    assert {k: read_back.pop(k) for k in pending} == dict.fromkeys(pending)
    assert read_back.pop("submitted_answers") == []
    assert read_back == task


def test_no_work_is_204_with_an_empty_body(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    worker = _worker(app)
    empty = client.post("/v1/assignments", json={}, headers=worker)
    assert empty.status_code == 204 and empty.get_data() == b""
    post_job(client, requester, items=3, golden=0, overlap=1, items_per_task=5, golden_ratio=0.0, launch=False)
    assert client.post("/v1/assignments", headers=worker).status_code == 204  # a draft gives no work
    job = post_job(client, requester, items=3, golden=1, overlap=2, items_per_task=5, golden_ratio=0.2)
    task = _lease(client, worker)
    assert task["job"]["id"] == job["id"]
    assert len(task["items"]) == 4  # 3 real + 1 golden: the real ones ran out
    assert client.post("/v1/assignments", json={}, headers=worker).status_code == 204  # seen them all
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).status_code == 204
    assert len(_lease(client, _worker(app, "other"))["items"]) == 4


def test_submit_then_retry_with_the_same_key_replays(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    post_job(client, requester, items=10, golden=2, items_per_task=3)
    worker = _worker(app)
    task = _lease(client, worker)
    first = _submit(client, worker, task, _answers(task), key="k-1")
    assert first.status_code == 200
    body = first.get_json()
    assert set(body) == {"id", "state", "answers", "submitted_at"}
    assert (body["id"], body["state"], body["answers"]) == (task["id"], "submitted", 3)
    assert count_rows(app, Answer) == 3
    retry = _submit(client, worker, task, _answers(task, "dog"), key="k-1")
    assert retry.status_code == 200
    assert retry.get_json() == body
    assert count_rows(app, Answer) == 3
    assert count_rows(app, Answer, label="dog") == 0
    assert_error(_submit(client, worker, task, _answers(task), key="k-2"), 409)
    assert_error(_submit(client, worker, task, _answers(task)), 409)
    assert count_rows(app, Answer) == 3
    assert client.get(f"/v1/assignments/{task['id']}", headers=worker).get_json()["state"] == "submitted"


def test_a_submit_without_a_key_is_accepted_once(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    post_job(client, requester, items=10, golden=2, items_per_task=3)
    worker = _worker(app)
    task = _lease(client, worker)
    assert _submit(client, worker, task, _answers(task)).status_code == 200
    assert_error(_submit(client, worker, task, _answers(task)), 409)
    assert_error(_submit(client, worker, task, _answers(task), key="late"), 409)
    assert_error(client.post(f"/v1/assignments/{task['id']}/skip", headers=worker), 409)
    assert count_rows(app, Answer) == 3


def test_bad_answers_write_nothing_and_keep_the_lease(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    post_job(client, requester, items=12, golden=2, items_per_task=4)
    worker = _worker(app, "a")
    task = _lease(client, worker)
    foreign = _lease(client, _worker(app, "b"))
    refs = [item["id"] for item in task["items"]]

    missing = {"answers": [{"item_id": ref, "label": "cat"} for ref in refs[:-1]]}
    body = assert_error(_submit(client, worker, task, missing, key="x"), 422)
    assert error_fields(body) == {"answers"}

    wrong_label = {"answers": [{"item_id": ref, "label": "cat"} for ref in refs]}
    wrong_label["answers"][2]["label"] = "lion"
    body = assert_error(_submit(client, worker, task, wrong_label, key="x"), 422)
    assert error_fields(body) == {"answers.2.label"}

    not_mine = {"answers": [{"item_id": ref, "label": "cat"} for ref in refs]}
    not_mine["answers"][1]["item_id"] = foreign["items"][0]["id"]
    body = assert_error(_submit(client, worker, task, not_mine, key="x"), 422)
    assert error_fields(body) == {"answers.1.item_id"}

    unknown = {"answers": [{"item_id": ref, "label": "cat"} for ref in refs] + [{"item_id": 10**12, "label": "cat"}]}
    body = assert_error(_submit(client, worker, task, unknown, key="x"), 422)
    assert error_fields(body) == {"answers.4.item_id"}

    assert count_rows(app, Answer) == 0
    assert client.get(f"/v1/assignments/{task['id']}", headers=worker).get_json()["state"] == "leased"
    ok = _submit(client, worker, task, _answers(task), key="x")  # the same key, now with good answers
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["answers"] == 4
    assert count_rows(app, Answer) == 4


def test_skip_returns_items_to_the_pool_for_others_only(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(client, requester, items=5, golden=0, overlap=1, items_per_task=5, golden_ratio=0.0)
    a, b = _worker(app, "a"), _worker(app, "b")
    task = _lease(client, a)
    assert len(task["items"]) == 5
    assert client.post("/v1/assignments", json={}, headers=b).status_code == 204  # all leased to a
    skipped = client.post(f"/v1/assignments/{task['id']}/skip", headers=a)
    assert skipped.status_code == 200
    assert skipped.get_json()["state"] == "skipped" and skipped.get_json()["answers"] == 0
    assert client.get(f"/v1/assignments/{task['id']}", headers=a).get_json()["state"] == "skipped"
    progress = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["progress"]
    assert (progress["answers_free"], progress["open_leases"]) == (5, 0)
    assert client.post("/v1/assignments", json={}, headers=a).status_code == 204  # never again to a
    again = _lease(client, b)
    assert _urls(again) == _urls(task)
    assert_error(_submit(client, a, task, _answers(task)), 409)
    assert_error(client.post(f"/v1/assignments/{task['id']}/skip", headers=a), 409)
    assert _submit(client, b, again, _answers(again)).status_code == 200
    assert count_rows(app, Answer) == 5


def test_expired_lease_refuses_submit_and_is_reissued_after_grace(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(client, requester, items=4, golden=0, overlap=1, items_per_task=4, golden_ratio=0.0)
    a, b = _worker(app, "a"), _worker(app, "b")
    task = _lease(client, a)
    _set_expiry(app, task["id"], utcnow() - timedelta(seconds=1))
    assert_error(_submit(client, a, task, _answers(task)), 409)
    assert count_rows(app, Answer) == 0
    # Within the grace period the lease is not reclaimed yet: nothing for b.
    assert client.post("/v1/assignments", json={}, headers=b).status_code == 204
    _set_expiry(app, task["id"], utcnow() - EXPIRY_GRACE - timedelta(seconds=1))
    reissued = _lease(client, b)
    assert reissued["job"]["id"] == job["id"]
    assert _urls(reissued) == _urls(task)
    assert client.get(f"/v1/assignments/{task['id']}", headers=a).get_json()["state"] == "expired"
    assert_error(_submit(client, a, task, _answers(task)), 409)
    assert client.post("/v1/assignments", json={}, headers=a).status_code == 204  # a saw these items
    assert _submit(client, b, reissued, _answers(reissued)).status_code == 200
    assert count_rows(app, Answer) == 4
    state = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()
    assert state["state"] == "completed"
    assert state["progress"]["answers"] == 4


def test_a_submit_before_a_moved_deadline_is_accepted(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    """The deadline read from the database decides: close but not past still takes a submit."""
    post_job(client, requester, items=4, golden=0, overlap=1, items_per_task=4, golden_ratio=0.0)
    a = _worker(app, "a")
    task = _lease(client, a)
    _set_expiry(app, task["id"], utcnow() + timedelta(seconds=30))
    assert _submit(client, a, task, _answers(task)).status_code == 200
    assert count_rows(app, Answer) == 4
