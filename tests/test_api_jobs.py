"""Requesters' jobs over HTTP: create, items, state machine, progress, results and exports."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select

from marketplace.db import get_engine, session_scope
from marketplace.models import Aggregate, Answer, Item, Slot
from tests.conftest import bearer, fund, job_body, new_key, post_job
from tests.test_api_bad_input import assert_error, count_rows

RESULT_FIELDS = ["item_id", "key", "data", "label", "confidence", "method", "version", "answers"]


def _items(n: int, golden: int = 0, prefix: str = "img") -> list[dict[str, Any]]:
    real = [{"data": {"url": f"{prefix}-{i}.jpg", "w": 10, "h": 10}} for i in range(n)]
    gold = [{"data": {"url": f"{prefix}-g{i}.jpg", "w": 10, "h": 10}, "answer": "cat"} for i in range(golden)]
    return real + gold


def _create(client: FlaskClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=job_body(**overrides), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def _progress(client: FlaskClient, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["progress"]  # type: ignore[no-any-return]


def _worker(app: Flask, name: str = "w") -> dict[str, str]:
    return bearer(new_key(app, "worker", name))


def test_create_job_applies_defaults_and_starts_as_draft(client: FlaskClient, requester: dict[str, str]) -> None:
    body = {"title": "t", "instructions": "", "annotation": {"type": "classification", "labels": ["a", "b"]}}
    response = client.post("/v1/jobs", json=body, headers=requester)
    assert response.status_code == 201
    job = response.get_json()
    assert isinstance(job["id"], int) and job["id"] >= 1
    assert job["state"] == "draft"
    assert job["title"] == "t" and job["instructions"] == ""
    assert job["annotation"] == {"type": "classification", "labels": ["a", "b"]}
    assert job["overlap"] == 3
    assert job["golden_ratio"] == 0.1
    assert job["items_per_task"] == 5
    assert job["reward_cents"] == 1
    assert job["aggregation"] == "auto"  # what the README says the default is
    assert job["lease_seconds"] == 600
    assert job["created_at"]
    explicit = _create(client, requester, overlap=7, golden_ratio=0.25, items_per_task=9, lease_seconds=30)
    assert (explicit["overlap"], explicit["golden_ratio"], explicit["items_per_task"], explicit["lease_seconds"]) == (
        7,
        0.25,
        9,
        30,
    )


def test_list_shows_only_own_jobs_newest_first(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    other = bearer(new_key(app, "requester", "other"))
    mine = [_create(client, requester, title=f"mine-{i}")["id"] for i in range(3)]
    theirs = _create(client, other, title="theirs")["id"]
    listed = client.get("/v1/jobs", headers=requester)
    assert listed.status_code == 200
    assert [j["id"] for j in listed.get_json()] == sorted(mine, reverse=True)
    assert [j["id"] for j in client.get("/v1/jobs", headers=other).get_json()] == [theirs]


def test_get_job_reports_progress(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job = post_job(client, requester, items=10, golden=2, overlap=2, items_per_task=3, golden_ratio=0.0)
    view = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()
    assert view["state"] == "running"
    progress = view["progress"]
    assert progress["items"] == 10
    assert progress["golden_items"] == 2
    assert progress["answers_wanted"] == 20
    assert progress["answers_free"] == 20
    assert progress["answers"] == 0 and progress["done"] == 0.0
    assert "quality" in view
    worker = _worker(app)
    task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).get_json()
    assert len(task["items"]) == 3
    progress = _progress(client, requester, job["id"])
    assert (progress["answers_free"], progress["answers_leased"], progress["open_leases"]) == (17, 3, 1)
    answers = [{"item_id": i["id"], "label": "dog"} for i in task["items"]]
    assert (
        client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker).status_code
        == 200
    )
    progress = _progress(client, requester, job["id"])
    assert (progress["answers"], progress["answers_leased"], progress["open_leases"]) == (3, 0, 0)
    assert progress["done"] == 0.15


def test_items_as_json_array_and_as_json_lines(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job = _create(client, requester)
    added = client.post(f"/v1/jobs/{job['id']}/items", json=_items(4, golden=1), headers=requester)
    assert added.status_code == 201
    body = added.get_json()
    assert (body["added"], body["golden"]) == (5, 1)
    assert len(body["items"]) == 5 and len({i["id"] for i in body["items"]}) == 5
    assert all(item["key"] == str(item["id"]) for item in body["items"])  # no key given: the id
    lines = "\n".join(json.dumps(item) for item in _items(6, golden=2, prefix="nd")) + "\n"
    added = client.post(
        f"/v1/jobs/{job['id']}/items", data=lines, content_type="application/x-ndjson", headers=requester
    )
    assert added.status_code == 201, added.get_json()
    assert (added.get_json()["added"], added.get_json()["golden"]) == (8, 2)
    progress = _progress(client, requester, job["id"])
    assert (progress["items"], progress["golden_items"]) == (10, 3)
    with session_scope(get_engine(app)) as session:
        rows = session.execute(select(Item.data, Item.is_golden, Item.answer).where(Item.job_id == job["id"])).all()
    assert {r.data["url"] for r in rows if r.data["url"].startswith("nd-")} == {f"nd-{i}.jpg" for i in range(6)} | {
        "nd-g0.jpg",
        "nd-g1.jpg",
    }
    assert all((r.answer == "cat") == r.is_golden and ("-g" in r.data["url"]) == r.is_golden for r in rows)


def test_ten_thousand_items_in_one_request(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job = _create(client, requester)
    added = client.post(f"/v1/jobs/{job['id']}/items", json=_items(9_900, golden=100), headers=requester)
    assert added.status_code == 201, added.get_json()
    assert (added.get_json()["added"], added.get_json()["golden"]) == (10_000, 100)
    progress = _progress(client, requester, job["id"])
    assert (progress["items"], progress["golden_items"]) == (9_900, 100)
    # One transaction: a bad golden item at the very end of 10,000 leaves nothing behind.
    bad = _items(9_999, prefix="again") + [{"data": {"url": "last.jpg", "w": 10, "h": 10}, "answer": "zebra"}]
    response = client.post(f"/v1/jobs/{job['id']}/items", json=bad, headers=requester)
    body = assert_error(response, 422, "9999.answer")
    assert "9999.answer" in body["message"]
    assert count_rows(app, Item, job_id=job["id"]) == 10_000


def test_golden_answer_outside_the_labels_writes_nothing(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(client, requester, items=5, golden=1)
    before = (count_rows(app, Item), count_rows(app, Slot))
    payload = _items(3, prefix="new") + [
        {"data": {"url": "g.jpg"}, "answer": "cat"},
        {"data": {"url": "x"}, "answer": "Cat"},
    ]
    assert_error(client.post(f"/v1/jobs/{job['id']}/items", json=payload, headers=requester), 422, "4.answer")
    assert (count_rows(app, Item), count_rows(app, Slot)) == before
    progress = _progress(client, requester, job["id"])
    assert (progress["items"], progress["golden_items"], progress["answers_free"]) == (5, 1, 15)


def test_items_added_to_a_running_job_enter_the_pool(client: FlaskClient, requester: dict[str, str]) -> None:
    job = post_job(client, requester, items=4, golden=1, overlap=2)
    assert _progress(client, requester, job["id"])["answers_free"] == 8
    added = client.post(f"/v1/jobs/{job['id']}/items", json=_items(3, golden=2, prefix="late"), headers=requester)
    assert added.status_code == 201
    progress = _progress(client, requester, job["id"])
    assert (progress["items"], progress["answers_free"], progress["answers_wanted"]) == (7, 14, 14)


def test_state_machine(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job = _create(client, requester)
    url = f"/v1/jobs/{job['id']}"

    def act(action: str) -> Any:
        return client.post(f"{url}/{action}", headers=requester)

    assert_error(act("launch"), 409)  # no items at all
    golden_only = [{"data": {"url": "g.jpg"}, "answer": "dog"}]
    assert client.post(f"{url}/items", json=golden_only, headers=requester).status_code == 201
    assert_error(act("launch"), 409)  # golden items are not work
    assert_error(act("pause"), 409)  # a draft is not running
    assert client.get(url, headers=requester).get_json()["state"] == "draft"
    assert count_rows(app, Slot) == 0
    assert client.post(f"{url}/items", json=_items(2), headers=requester).status_code == 201
    fund(client, requester, job["budget_cents"])
    launched = act("launch")
    assert launched.status_code == 200
    assert launched.get_json()["state"] == "running"
    assert launched.get_json()["progress"]["answers_free"] == 6
    assert_error(act("launch"), 409)
    paused = act("pause")
    assert paused.status_code == 200 and paused.get_json()["state"] == "paused"
    assert_error(act("pause"), 409)
    worker = _worker(app)
    assert client.post("/v1/assignments", json={}, headers=worker).status_code == 204  # paused: no work
    relaunched = act("launch")
    assert relaunched.status_code == 200 and relaunched.get_json()["state"] == "running"
    assert relaunched.get_json()["progress"]["answers_free"] == 6  # relaunch does not refill the pool
    cancelled = act("cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    assert cancelled.get_json()["progress"]["answers_free"] == 0
    for action in ("launch", "pause", "cancel"):
        assert_error(act(action), 409)
    assert_error(client.post(f"{url}/items", json=_items(1, prefix="late"), headers=requester), 409)
    assert client.get(url, headers=requester).get_json()["state"] == "cancelled"
    assert count_rows(app, Item, job_id=job["id"]) == 3


def test_cancel_stops_leasing_and_refuses_open_leases(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(client, requester, items=10, golden=2, items_per_task=3)
    worker = _worker(app, "a")
    task = client.post("/v1/assignments", json={}, headers=worker).get_json()
    other = client.post("/v1/assignments", json={}, headers=worker).get_json()
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=requester).status_code == 200
    assert client.post("/v1/assignments", json={}, headers=worker).status_code == 204
    assert client.post("/v1/assignments", json={}, headers=_worker(app, "b")).status_code == 204
    answers = [{"item_id": i["id"], "label": "cat"} for i in task["items"]]
    assert_error(client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker), 409)
    assert_error(client.post(f"/v1/assignments/{other['id']}/skip", headers=worker), 409)
    assert count_rows(app, Answer) == 0
    assert client.get(f"/v1/assignments/{task['id']}", headers=worker).get_json()["state"] == "revoked"


def _results_job(app: Flask, client: FlaskClient, requester: dict[str, str]) -> tuple[int, list[int], list[int]]:
    """A job with 25 real and 5 golden items; aggregates stored for some real items and one golden one."""
    job = post_job(client, requester, items=25, golden=5, launch=False)
    with session_scope(get_engine(app)) as session:
        rows = session.execute(select(Item.id, Item.is_golden).where(Item.job_id == job["id"])).all()
        real = sorted(r.id for r in rows if not r.is_golden)
        golden = sorted(r.id for r in rows if r.is_golden)
        aggregated = real[::2] + golden[:1]
        session.execute(
            insert(Aggregate),
            [
                {
                    "job_id": job["id"],
                    "item_id": i,
                    "label": "dog",
                    "confidence": 0.75,
                    "method": "MajorityVote",
                    "version": "test",
                    "answers": 3,
                }
                for i in aggregated
            ],
        )
    return job["id"], real, golden


def test_results_are_keyset_paginated_over_real_items_only(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job_id, real, golden = _results_job(app, client, requester)
    seen: list[int] = []
    pages = 0
    after = 0
    while True:
        response = client.get(f"/v1/jobs/{job_id}/results?after={after}&limit=7", headers=requester)
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        assert set(page) == {"results", "next_after"}
        assert len(page["results"]) <= 7
        pages += 1
        for row in page["results"]:
            assert set(row) == set(RESULT_FIELDS)
            if row["item_id"] in real[::2]:
                assert (row["label"], row["confidence"], row["answers"]) == ("dog", 0.75, 3)
            else:
                assert (row["label"], row["answers"]) == (None, 0)
        seen += [row["item_id"] for row in page["results"]]
        if page["next_after"] is None:
            break
        assert page["next_after"] == page["results"][-1]["item_id"]
        after = page["next_after"]
    assert pages == 4
    assert seen == real
    assert not set(seen) & set(golden)
    default = client.get(f"/v1/jobs/{job_id}/results", headers=requester).get_json()
    assert [r["item_id"] for r in default["results"]] == real and default["next_after"] is None
    tail = client.get(f"/v1/jobs/{job_id}/results?after={real[-1]}", headers=requester).get_json()
    assert tail == {"results": [], "next_after": None}


def test_results_export_as_csv_and_jsonl(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job_id, real, golden = _results_job(app, client, requester)
    response = client.get(f"/v1/jobs/{job_id}/results?format=csv", headers=requester)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    reader = csv.DictReader(io.StringIO(response.get_data(as_text=True)))
    assert reader.fieldnames == RESULT_FIELDS
    rows = list(reader)
    assert [int(r["item_id"]) for r in rows] == real
    labelled = {int(r["item_id"]): r for r in rows if r["label"]}
    assert sorted(labelled) == real[::2]
    assert all(float(r["confidence"]) == 0.75 and r["answers"] == "3" for r in labelled.values())

    response = client.get(f"/v1/jobs/{job_id}/results?format=jsonl", headers=requester)
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [r["item_id"] for r in lines] == real
    assert all(set(r) == set(RESULT_FIELDS) for r in lines)
    assert {r["item_id"] for r in lines if r["label"] == "dog"} == set(real[::2])
    assert not {r["item_id"] for r in lines} & set(golden)
