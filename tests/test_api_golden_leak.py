"""Golden items look exactly like real ones to workers, and their answers never reach a worker.

Golden answers here are labels that appear in no item data, title or instructions, so any
occurrence of one in a worker-facing response (once the job's public `annotation` is taken
out) is a leak.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select, update
from werkzeug.test import TestResponse

from marketplace.db import get_engine, session_scope
from marketplace.models import Assignment, AssignmentItem, Item, WorkerQuality, utcnow
from tests.conftest import bearer, fund, job_body, new_key
from tests.test_api_bad_input import assert_error

GOLDEN_ANSWERS = ("zebra", "okapi")
LABELS = ["cat", "dog", *GOLDEN_ANSWERS]
FORBIDDEN_EXACT = {"answer", "is_golden", "golden", "correct", "truth", "expected", "gold"}
QUALITY_KEYS: set[str] = set()  # a worker's own /me has no golden counts either (see `checks`)


def _without_annotation(node: Any) -> Any:
    """The body without the job's label list and the worker's own answers echoed back (a golden
    label the worker typed itself is not a leak)."""
    if isinstance(node, dict):
        return {k: _without_annotation(v) for k, v in node.items() if k not in ("annotation", "submitted_answers")}
    if isinstance(node, list):
        return [_without_annotation(v) for v in node]
    return node


def _check_keys(node: Any, path: str = "") -> None:
    if isinstance(node, dict):
        if isinstance(node.get("items"), list):
            for item in node["items"]:
                assert set(item) == {"id", "data"}, (path, item)
        for key, value in node.items():
            lowered = key.lower()
            allowed_quality = key in QUALITY_KEYS and ".quality." in f"{path}."
            if not allowed_quality:
                assert lowered not in FORBIDDEN_EXACT, (path, key)
                assert "golden" not in lowered and "correct" not in lowered, (path, key)
            if lowered == "answers" and not path.startswith(".errors"):
                assert isinstance(value, int), (path, key, value)  # a count, never an echo
            _check_keys(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_keys(value, f"{path}.{i}")


def scan(response: TestResponse) -> Any:
    """Fail on anything golden in a worker-facing response; return its JSON body (or None)."""
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    text = response.get_data(as_text=True)
    if response.status_code == 204:
        assert text == ""
        body = None
    else:
        assert response.mimetype == "application/json", (response.status_code, text[:300])
        body = json.loads(text)
        _check_keys(_without_annotation(body))
        text = json.dumps(_without_annotation(body))
    for answer in GOLDEN_ANSWERS:
        assert answer not in text.lower(), (response.status_code, text[:1000])
        assert answer not in headers.lower(), headers
    return body


def _shape(data: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((k, type(v).__name__) for k, v in data.items())


def _golden_refs(app: Flask, assignment_id: int) -> dict[int, str | None]:
    """Test-side truth: task reference -> golden answer (None for real items)."""
    with session_scope(get_engine(app)) as session:
        rows = session.execute(
            select(AssignmentItem.id, Item.is_golden, Item.answer)
            .join(Item, Item.id == AssignmentItem.item_id)
            .where(AssignmentItem.assignment_id == assignment_id)
        ).all()
    return {r.id: (r.answer if r.is_golden else None) for r in rows}


def _post_job(
    client: FlaskClient, requester: dict[str, str], real: int, golden: int, **overrides: Any
) -> dict[str, Any]:
    body = job_body(annotation={"type": "classification", "labels": LABELS}, **overrides)
    job = client.post("/v1/jobs", json=body, headers=requester).get_json()
    items: list[dict[str, Any]] = [{"data": {"url": f"img-{i}.jpg", "w": 640, "h": 480}} for i in range(real)]
    items += [
        {"data": {"url": f"img-{real + i}.jpg", "w": 640, "h": 480}, "answer": GOLDEN_ANSWERS[i % 2]}
        for i in range(golden)
    ]
    assert client.post(f"/v1/jobs/{job['id']}/items", json=items, headers=requester).status_code == 201
    fund(client, requester, job["budget_cents"])
    assert client.post(f"/v1/jobs/{job['id']}/launch", headers=requester).status_code == 200
    return job  # type: ignore[no-any-return]


def _lease(client: FlaskClient, worker: dict[str, str]) -> dict[str, Any]:
    response = client.post("/v1/assignments", json={}, headers=worker)
    assert response.status_code == 201, response.get_data(as_text=True)
    return scan(response)  # type: ignore[no-any-return]


def test_no_worker_facing_response_reveals_golden_items(
    app: Flask, client: FlaskClient, requester: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app.config.update(MAX_OPEN_LEASES=100, MAX_OPEN_LEASES_PER_JOB=100)  # one worker holds several tasks here
    job = _post_job(client, requester, real=24, golden=12, overlap=2, items_per_task=4, golden_ratio=0.5)
    worker = bearer(new_key(app, "worker", "w"))
    other = bearer(new_key(app, "worker", "other"))

    tasks = [_lease(client, worker) for _ in range(5)]
    truth = {task["id"]: _golden_refs(app, task["id"]) for task in tasks}
    golden_seen = sum(answer is not None for refs in truth.values() for answer in refs.values())
    assert golden_seen == 10  # 2 of every 4 items: the leak checks below really see golden items
    for task in tasks:
        read_back = scan(client.get(f"/v1/assignments/{task['id']}", headers=worker))
        unanswered = {"submitted_answers": [], "submitted_at": None}
        assert read_back == task | unanswered | {"decision": None, "decision_reason": None, "paid_cents": None}
        shapes = {tuple(_shape(item["data"])) for item in task["items"]}
        assert len(shapes) == 1  # golden data: exactly the real items' shape

    task, refs = tasks[0], truth[tasks[0]["id"]]
    url = f"/v1/assignments/{task['id']}/submit"
    golden_pos = next(i for i, item in enumerate(task["items"]) if refs[item["id"]] is not None)
    real_pos = next(i for i, item in enumerate(task["items"]) if refs[item["id"]] is None)

    def answers(**labels: str) -> list[dict[str, Any]]:
        return [{"item_id": item["id"], "label": labels.get(f"p{i}", "cat")} for i, item in enumerate(task["items"])]

    # Errors a worker can provoke: the same for a golden item as for a real one, and never the answer.
    on_golden = scan(client.post(url, json={"answers": answers(**{f"p{golden_pos}": "lion"})}, headers=worker))
    on_real = scan(client.post(url, json={"answers": answers(**{f"p{real_pos}": "lion"})}, headers=worker))
    assert on_golden["code"] == on_real["code"] == 422
    assert on_golden["message"].replace(str(golden_pos), "N") == on_real["message"].replace(str(real_pos), "N")
    full = answers()
    miss_golden = scan(client.post(url, json={"answers": full[:golden_pos] + full[golden_pos + 1 :]}, headers=worker))
    miss_real = scan(client.post(url, json={"answers": full[:real_pos] + full[real_pos + 1 :]}, headers=worker))
    assert miss_golden["code"] == miss_real["code"] == 422
    assert set(miss_golden["errors"]["json"]) == set(miss_real["errors"]["json"]) == {"answers"}
    foreign = [dict(a) for a in full]
    foreign[golden_pos]["item_id"] = tasks[1]["items"][0]["id"]
    assert scan(client.post(url, json={"answers": foreign}, headers=worker))["code"] == 422
    dupes = [*full, dict(full[golden_pos])]
    assert scan(client.post(url, json={"answers": dupes}, headers=worker))["code"] == 422
    assert scan(client.post(url, json={"answers": []}, headers=worker))["code"] == 422
    long_key = {**worker, "Idempotency-Key": "k" * 201}
    assert scan(client.post(url, json={"answers": full}, headers=long_key))["code"] == 422
    malformed = client.post(url, data='{"answers": [', content_type="application/json", headers=worker)
    assert scan(malformed)["code"] == 400
    assert scan(client.post(url, json={"answers": full}, headers=other))["code"] == 404
    assert scan(client.get(f"/v1/assignments/{task['id']}", headers=other))["code"] == 404
    assert scan(client.post(f"/v1/assignments/{task['id']}/skip", headers=other))["code"] == 404

    # A right and a wrong golden answer get the same response.
    right = [{"item_id": r, "label": refs[r] or "cat"} for r in refs]
    done_right = scan(client.post(url, json={"answers": right}, headers={**worker, "Idempotency-Key": "a"}))
    second = tasks[1]
    wrong = [{"item_id": r, "label": "dog"} for r in truth[second["id"]]]
    done_wrong = scan(client.post(f"/v1/assignments/{second['id']}/submit", json={"answers": wrong}, headers=worker))
    strip = {"id", "submitted_at"}
    assert {k: v for k, v in done_right.items() if k not in strip} == {
        k: v for k, v in done_wrong.items() if k not in strip
    }
    replay = scan(client.post(url, json={"answers": right}, headers={**worker, "Idempotency-Key": "a"}))
    assert replay == done_right
    assert scan(client.post(url, json={"answers": right}, headers={**worker, "Idempotency-Key": "b"}))["code"] == 409
    assert scan(client.post(f"/v1/assignments/{task['id']}/skip", headers=worker))["code"] == 409
    assert scan(client.get(f"/v1/assignments/{task['id']}", headers=worker))["state"] == "submitted"

    # Skip, and what follows a skip or an expiry.
    third = tasks[2]
    assert scan(client.post(f"/v1/assignments/{third['id']}/skip", headers=worker))["state"] == "skipped"
    third_answers = [{"item_id": r, "label": a or "cat"} for r, a in truth[third["id"]].items()]
    third_url = f"/v1/assignments/{third['id']}/submit"
    assert scan(client.post(third_url, json={"answers": third_answers}, headers=worker))["code"] == 409
    assert scan(client.post(f"/v1/assignments/{third['id']}/skip", headers=worker))["code"] == 409
    fourth = tasks[3]
    with session_scope(get_engine(app)) as session:
        session.execute(
            update(Assignment).where(Assignment.id == fourth["id"]).values(expires_at=utcnow() - timedelta(seconds=5))
        )
    fourth_answers = [{"item_id": r, "label": a or "cat"} for r, a in truth[fourth["id"]].items()]
    fourth_url = f"/v1/assignments/{fourth['id']}/submit"
    assert scan(client.post(fourth_url, json={"answers": fourth_answers}, headers=worker))["code"] == 409
    assert scan(client.get(f"/v1/assignments/{fourth['id']}", headers=worker))["id"] == fourth["id"]

    # Leasing errors and the end of the work.
    assert scan(client.post("/v1/assignments", json={"job_id": 10**9}, headers=worker))["code"] == 404
    assert scan(client.post("/v1/assignments", json={"job_id": "x"}, headers=worker))["code"] == 422
    while (response := client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)).status_code == 201:
        scan(response)
    assert scan(response) is None

    # The worker's own record, with a quality row as an aggregation would leave it.
    with session_scope(get_engine(app)) as session:
        worker_id = session.execute(select(Assignment.worker_id).where(Assignment.id == task["id"])).scalar_one()
        session.execute(
            insert(WorkerQuality).values(
                job_id=job["id"], worker_id=worker_id, answers=8, golden_seen=4, golden_correct=2, golden_accuracy=0.5
            )
        )
    me = scan(client.get("/v1/me", headers=worker))
    assert me["role"] == "worker" and me["answers"] == 8
    assert me["quality"] == [{"job_id": job["id"], "answers": 8, "agreement": None}]  # no golden counts per job
    assert me["checks"]["accuracy"] is None  # fewer than the minimum, a day old
    assert_error(client.get("/v1/jobs", headers=worker), 403)
    scan(client.get("/v1/jobs", headers=worker))

    for record in caplog.records:
        for answer in GOLDEN_ANSWERS:
            assert answer not in record.getMessage().lower(), record.getMessage()


def test_golden_items_come_in_random_positions(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    """30 leases of 2 golden among 4 items: a fixed position would show; random fails with p < 1e-8."""
    app.config.update(MAX_OPEN_LEASES=100, MAX_OPEN_LEASES_PER_JOB=100)  # each worker holds its three
    _post_job(client, requester, real=60, golden=20, overlap=1, items_per_task=4, golden_ratio=0.5, golden_max_views=10)
    positions: list[tuple[int, ...]] = []
    for w in range(10):
        worker = bearer(new_key(app, "worker", f"w{w}"))
        for _ in range(3):
            task = _lease(client, worker)
            refs = _golden_refs(app, task["id"])
            assert len(task["items"]) == 4
            golden_at = tuple(i for i, item in enumerate(task["items"]) if refs[item["id"]] is not None)
            assert len(golden_at) == 2
            positions.append(golden_at)
            again = client.get(f"/v1/assignments/{task['id']}", headers=worker).get_json()
            assert [i["id"] for i in again["items"]] == [i["id"] for i in task["items"]]  # order kept
    assert len(positions) == 30
    assert {p for pair in positions for p in pair} == {0, 1, 2, 3}
    assert len(set(positions)) >= 2


def test_a_qualification_test_reveals_no_golden_answers(
    app: Flask, client: FlaskClient, requester: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A test is golden items only: same item shape, same errors, and its outcome is one word."""
    caplog.set_level(logging.DEBUG)
    qualification = {"items": 4, "pass_mark": 0.75}
    _post_job(client, requester, real=8, golden=12, overlap=1, items_per_task=4, qualification=qualification)
    good, poor = bearer(new_key(app, "worker", "good")), bearer(new_key(app, "worker", "poor"))

    test = _lease(client, good)
    assert test["kind"] == "qualification" and len(test["items"]) == 4
    refs = _golden_refs(app, test["id"])
    assert all(answer is not None for answer in refs.values())  # golden items, every one
    assert {tuple(_shape(item["data"])) for item in test["items"]} == {(("h", "int"), ("url", "str"), ("w", "int"))}
    undecided = {"decision": None, "decision_reason": None, "paid_cents": None, "submitted_at": None}
    undecided |= {"submitted_answers": []}
    assert scan(client.get(f"/v1/assignments/{test['id']}", headers=good)) == test | undecided
    assert scan(client.post("/v1/assignments", json={}, headers=good)) is None  # the test is out: nothing else

    url = f"/v1/assignments/{test['id']}/submit"
    right = [{"item_id": item["id"], "label": refs[item["id"]]} for item in test["items"]]
    bad_label = [dict(a) for a in right]
    bad_label[0]["label"] = "lion"
    assert scan(client.post(url, json={"answers": bad_label}, headers=good))["code"] == 422
    missing = scan(client.post(url, json={"answers": right[1:]}, headers=good))
    assert missing["code"] == 422 and set(missing["errors"]["json"]) == {"answers"}

    one_wrong = [dict(a) for a in right]
    one_wrong[0]["label"] = next(label for label in LABELS if label != right[0]["label"])
    passed = scan(client.post(url, json={"answers": one_wrong}, headers={**good, "Idempotency-Key": "t"}))
    assert set(passed) == {"id", "state", "answers", "submitted_at", "qualification"}
    assert passed["qualification"] == "passed" and passed["answers"] == 4
    assert scan(client.post(url, json={"answers": one_wrong}, headers={**good, "Idempotency-Key": "t"})) == passed

    other = _lease(client, poor)
    wrong = [{"item_id": item["id"], "label": "cat"} for item in other["items"]]
    failed = scan(client.post(f"/v1/assignments/{other['id']}/submit", json={"answers": wrong}, headers=poor))
    assert failed["qualification"] == "failed"
    strip = {"id", "submitted_at", "qualification"}
    assert {k: v for k, v in passed.items() if k not in strip} == {k: v for k, v in failed.items() if k not in strip}

    assert _lease(client, good)["kind"] == "task"
    assert scan(client.post("/v1/assignments", json={}, headers=poor)) is None
    for record in caplog.records:
        for answer in GOLDEN_ANSWERS:
            assert answer not in record.getMessage().lower(), record.getMessage()
