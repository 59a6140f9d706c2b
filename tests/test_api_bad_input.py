"""Bad input everywhere: a 4xx with a JSON error body naming the field, never a 500, never a partial write.

The helpers at the top (`assert_error`, `error_fields`, `count_rows`) are shared by the other
`test_api_*` modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from marketplace.db import dispose, get_engine, session_scope
from marketplace.models import Account, Answer, Assignment, Item, Job
from tests.conftest import bearer, job_body, make_app, new_key, post_job

ERROR_KEYS = {"code", "status", "message", "errors"}


# --- shared helpers ------------------------------------------------------------------------------


def error_fields(body: dict[str, Any]) -> set[str]:
    """Dotted paths of the fields named in `errors` (without the location level, e.g. `json`)."""
    found: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            found.add(prefix)

    for node in (body.get("errors") or {}).values():
        walk(node, "")
    return found


def assert_error(response: TestResponse, status: int, field: str | None = None) -> dict[str, Any]:
    """The response is `status` (a 4xx) with a JSON error body; `field` is named in its errors."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, (response.status_code, text[:1000])
    assert 400 <= status < 500
    assert response.mimetype == "application/json", (response.mimetype, text[:300])
    body = json.loads(text)
    assert isinstance(body, dict), body
    assert body["code"] == status, body
    assert isinstance(body["status"], str) and body["status"], body
    assert set(body) <= ERROR_KEYS, body
    if field is not None:
        paths = error_fields(body)
        assert any(p == field or p.startswith(field + ".") for p in paths), (field, body)
    return body


def count_rows(app: Flask, model: Any, **where: Any) -> int:
    with session_scope(get_engine(app)) as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(session.execute(query).scalar_one())


def snapshot(app: Flask) -> dict[str, int]:
    """Row counts of the tables a bad request could write to."""
    return {m.__name__: count_rows(app, m) for m in (Account, Job, Item, Assignment, Answer)}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def worker(app: Flask) -> dict[str, str]:
    return bearer(new_key(app, "worker", "w"))


@pytest.fixture
def draft(client: FlaskClient, requester: dict[str, str]) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=job_body(), headers=requester)
    assert response.status_code == 201
    return response.get_json()  # type: ignore[no-any-return]


@pytest.fixture
def small_app(database_url: str, redis: Redis) -> Iterator[Flask]:
    application = make_app(database_url, MAX_CONTENT_LENGTH=1000)
    yield application
    dispose(application)


# --- job creation --------------------------------------------------------------------------------


BAD_JOB_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"overlap": "3"}, "overlap"),
    ({"overlap": 3.0}, "overlap"),
    ({"overlap": 2.5}, "overlap"),
    ({"overlap": True}, "overlap"),
    ({"overlap": None}, "overlap"),
    ({"items_per_task": 5.0}, "items_per_task"),
    ({"reward_cents": "2"}, "reward_cents"),
    ({"lease_seconds": 60.0}, "lease_seconds"),
    ({"title": 7}, "title"),
    ({"title": ""}, "title"),
    ({"instructions": ["a"]}, "instructions"),
    ({"golden_ratio": "lots"}, "golden_ratio"),
    ({"golden_ratio": [0.1]}, "golden_ratio"),
    ({"annotation": "classification"}, "annotation"),
    ({"bogus": 1}, "bogus"),
    ({"overlap": 0}, "overlap"),
    ({"overlap": 51}, "overlap"),
    ({"golden_ratio": 1.5}, "golden_ratio"),
    ({"golden_ratio": -0.1}, "golden_ratio"),
    ({"items_per_task": 0}, "items_per_task"),
    ({"reward_cents": -1}, "reward_cents"),
    ({"lease_seconds": 1}, "lease_seconds"),
    ({"aggregation": "best_guess"}, "aggregation"),
    ({"annotation": {"type": "classification", "labels": ["cat", "cat"]}}, "annotation.labels"),
    ({"annotation": {"type": "classification", "labels": ["cat"]}}, "annotation.labels"),
    ({"annotation": {"type": "classification", "labels": ["cat", ""]}}, "annotation.labels.1"),
    ({"annotation": {"type": "classification", "labels": ["cat", 3]}}, "annotation.labels.1"),
    ({"annotation": {"type": "telepathy", "labels": ["cat", "dog"]}}, "annotation.type"),
    ({"annotation": {"labels": ["cat", "dog"]}}, "annotation.type"),
    ({"annotation": {"type": "classification", "labels": ["a", "b"], "bogus": 1}}, "annotation.bogus"),
]


def test_create_job_rejects_bad_fields(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    before = snapshot(app)
    for overrides, field in BAD_JOB_FIELDS:
        response = client.post("/v1/jobs", json=job_body(**overrides), headers=requester)
        assert_error(response, 422, field)
    assert snapshot(app) == before


def test_create_job_names_a_missing_required_field(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    for missing in ("title", "instructions", "annotation"):
        body = job_body()
        del body[missing]
        assert_error(client.post("/v1/jobs", json=body, headers=requester), 422, missing)
    assert count_rows(app, Job) == 0


def test_create_job_rejects_nan_golden_ratio(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    raw = json.dumps(job_body(golden_ratio=float("nan")))
    assert "NaN" in raw
    response = client.post("/v1/jobs", data=raw, content_type="application/json", headers=requester)
    assert response.status_code in (400, 422)
    assert_error(response, response.status_code)
    assert count_rows(app, Job) == 0


def test_malformed_json_is_a_400_with_a_json_body(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    for raw in ('{"title": "x",', "not json at all", '{"title": "a"}}', b"\xff\xfe{"):
        response = client.post("/v1/jobs", data=raw, content_type="application/json", headers=requester)
        assert_error(response, 400)
    assert count_rows(app, Job) == 0


def test_a_body_that_is_not_an_object_is_rejected(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    for payload in ([job_body()], "a job", 3, None):
        response = client.post("/v1/jobs", data=json.dumps(payload), content_type="application/json", headers=requester)
        assert response.status_code in (400, 422), (payload, response.get_json())
        assert_error(response, response.status_code)
    assert count_rows(app, Job) == 0


# --- items ---------------------------------------------------------------------------------------


BAD_ITEMS: list[tuple[Any, str]] = [
    ([], "_body"),
    ({"data": {"url": "x"}}, "_body"),
    ("items", "_body"),
    ([{"data": {"url": "a"}}, {"url": "b"}], "1.data"),
    ([{"data": {"url": "a"}}, {"data": "b"}], "1.data"),
    ([{"data": {"url": "a"}}, {"data": {"url": "b"}, "bogus": 1}], "1.bogus"),
    ([{"data": {"url": "a"}}, {"data": {"url": "b"}, "answer": 3}], "1.answer"),
    ([{"data": {"url": "a"}}, {"data": {"url": "b"}, "answer": ""}], "1.answer"),
    ([{"data": {"url": "a"}}, {"data": {"url": "b"}, "answer": "lion"}], "1.answer"),
    ([{"data": {"url": "a"}}, 5], "1"),
    ([{"data": {"blob": "x" * 20_000}}], "0.data"),
]


def test_items_are_checked_all_or_nothing(
    app: Flask, client: FlaskClient, requester: dict[str, str], draft: dict[str, Any]
) -> None:
    before = snapshot(app)
    for payload, field in BAD_ITEMS:
        response = client.post(f"/v1/jobs/{draft['id']}/items", json=payload, headers=requester)
        assert_error(response, 422, field)
    assert snapshot(app) == before


def test_malformed_items_body_is_a_400(
    app: Flask, client: FlaskClient, requester: dict[str, str], draft: dict[str, Any]
) -> None:
    url = f"/v1/jobs/{draft['id']}/items"
    assert_error(client.post(url, data="[{", content_type="application/json", headers=requester), 400)
    lines = '{"data": {"url": "a"}}\n{"data": \n'
    assert_error(client.post(url, data=lines, content_type="application/x-ndjson", headers=requester), 400)
    assert count_rows(app, Item) == 0


def test_an_over_large_body_is_a_413_with_json(small_app: Flask, redis: Redis) -> None:
    client = small_app.test_client()
    requester = bearer(new_key(small_app, "requester", "r"))
    created = client.post("/v1/jobs", json=job_body(), headers=requester)
    assert created.status_code == 201
    job_id = created.get_json()["id"]
    items = [{"data": {"url": f"img-{i}.jpg", "w": 10, "h": 10}} for i in range(100)]
    assert len(json.dumps(items)) > 1000
    before = snapshot(small_app)
    assert_error(client.post(f"/v1/jobs/{job_id}/items", json=items, headers=requester), 413)
    assert_error(client.post("/v1/jobs", json=job_body(instructions="x" * 5000), headers=requester), 413)
    assert snapshot(small_app) == before
    assert count_rows(small_app, Item) == 0


# --- paths, methods, queries ---------------------------------------------------------------------


BAD_IDS = ("0", "-1", "99999999999999999999999", "9223372036854775808", "abc", "1.5", "%20")


def test_bad_ids_in_paths_are_404_never_500(
    client: FlaskClient, requester: dict[str, str], worker: dict[str, str]
) -> None:
    answers = {"answers": [{"item_id": 1, "label": "cat"}]}
    for bad in BAD_IDS:
        for path in ("/v1/jobs/{}", "/v1/jobs/{}/results", "/v1/jobs/{}/workers"):
            assert_error(client.get(path.format(bad), headers=requester), 404)
        for path in ("/v1/jobs/{}/launch", "/v1/jobs/{}/cancel", "/v1/jobs/{}/items"):
            assert_error(client.post(path.format(bad), json=[], headers=requester), 404)
        assert_error(client.get(f"/v1/assignments/{bad}", headers=worker), 404)
        assert_error(client.post(f"/v1/assignments/{bad}/skip", headers=worker), 404)
        assert_error(client.post(f"/v1/assignments/{bad}/submit", json=answers, headers=worker), 404)


def test_the_largest_id_is_a_404_not_a_database_error(
    client: FlaskClient, requester: dict[str, str], worker: dict[str, str]
) -> None:
    big = 2**63 - 1
    assert_error(client.get(f"/v1/jobs/{big}", headers=requester), 404)
    assert_error(client.get(f"/v1/assignments/{big}", headers=worker), 404)
    assert_error(client.post("/v1/assignments", json={"job_id": big}, headers=worker), 404)


@pytest.mark.parametrize("big", [2**31, 2**63 - 1])
def test_no_id_in_a_path_or_query_makes_a_500(
    client: FlaskClient,
    requester: dict[str, str],
    operator: dict[str, str],
    worker: dict[str, str],
    draft: dict[str, Any],
    big: int,
) -> None:
    """Every operation of the OpenAPI document with an integer parameter, called by each role
    with ids past PostgreSQL's integer and at the top of bigint: an id column too narrow made
    the database fail the query (found by schemathesis). First every integer parameter is
    `big`, then the job is the requester's own and the rest is `big`."""
    spec = client.get("/openapi.json").get_json()
    calls = 0
    for template, operations in spec["paths"].items():
        shared = operations.get("parameters", [])  # the path's own parameters
        for method, operation in operations.items():
            if method not in ("get", "post", "patch", "delete"):
                continue
            every = [*shared, *operation.get("parameters", [])]
            params = [p for p in every if p.get("schema", {}).get("type") == "integer"]
            if not params:
                continue
            for own_job in (False, True):
                values = {p["name"]: draft["id"] if own_job and p["name"] == "job_id" else big for p in params}
                path = template.format(**{p["name"]: values[p["name"]] for p in params if p["in"] == "path"})
                query = {p["name"]: values[p["name"]] for p in params if p["in"] == "query"}
                for headers in (requester, operator, worker):
                    body = {} if method in ("post", "patch") else None
                    response = client.open(path, method=method.upper(), query_string=query, json=body, headers=headers)
                    calls += 1
                    assert response.status_code < 500, (method, path, query, response.get_data(as_text=True)[:300])
                    if response.status_code >= 400:
                        assert response.is_json, (method, path, response.status_code)
    assert calls > 100
    for body in ({"job_id": big}, {"reason": "x", "job_id": big}):
        assert client.post("/v1/assignments", json=body, headers=worker).status_code < 500
        assert client.post(f"/v1/workers/{big}/ban", json=body, headers=operator).status_code < 500


def test_a_nul_character_is_a_422_naming_the_field(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    """PostgreSQL's text columns refuse NUL: found by schemathesis as a 500 on account names."""
    response = client.post("/v1/accounts", json={"role": "worker", "name": "a\x00b"}, headers=operator)
    assert_error(response, 422, "name")
    assert_error(client.post("/v1/jobs", json=job_body(title="t\x00"), headers=requester), 422, "title")
    labels = job_body(annotation={"type": "classification", "labels": ["cat", "d\x00g"]})
    assert_error(client.post("/v1/jobs", json=labels, headers=requester), 422, "annotation.labels")
    assert count_rows(app, Job) == 0


BAD_QUERIES = [
    ("limit=0", "limit"),
    ("limit=100000", "limit"),
    ("limit=-5", "limit"),
    ("limit=ten", "limit"),
    ("after=-1", "after"),
    ("after=x", "after"),
    ("format=xml", "format"),
]


def test_results_query_is_validated(client: FlaskClient, requester: dict[str, str], draft: dict[str, Any]) -> None:
    for query, field in BAD_QUERIES:
        assert_error(client.get(f"/v1/jobs/{draft['id']}/results?{query}", headers=requester), 422, field)


def test_405_keeps_its_allow_header(client: FlaskClient, requester: dict[str, str], draft: dict[str, Any]) -> None:
    response = client.delete("/v1/jobs", headers=requester)
    assert_error(response, 405)
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}
    response = client.put(f"/v1/jobs/{draft['id']}/launch", headers=requester)
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]
    response = client.get("/v1/assignments", headers=requester)
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_unknown_path_is_a_json_404(client: FlaskClient, requester: dict[str, str]) -> None:
    assert_error(client.get("/v1/nothing-here", headers=requester), 404)


# --- worker input --------------------------------------------------------------------------------


def _lease(client: FlaskClient, app: Flask, requester: dict[str, str], worker: dict[str, str]) -> dict[str, Any]:
    post_job(client, requester, items=10, golden=2, items_per_task=3)
    response = client.post("/v1/assignments", json={}, headers=worker)
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def _still_leased(client: FlaskClient, worker: dict[str, str], task: dict[str, Any]) -> None:
    """Nothing was written: the lease is open and a correct submit goes through."""
    assert client.get(f"/v1/assignments/{task['id']}", headers=worker).get_json()["state"] == "leased"
    answers = [{"item_id": item["id"], "label": "dog"} for item in task["items"]]
    done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["answers"] == len(task["items"])


def test_idempotency_key_over_200_chars_is_422(
    app: Flask, client: FlaskClient, requester: dict[str, str], worker: dict[str, str]
) -> None:
    task = _lease(client, app, requester, worker)
    answers = {"answers": [{"item_id": item["id"], "label": "cat"} for item in task["items"]]}
    url = f"/v1/assignments/{task['id']}/submit"
    for key in ("k" * 201, ""):
        response = client.post(url, json=answers, headers={**worker, "Idempotency-Key": key})
        assert_error(response, 422, "Idempotency-Key")
    assert count_rows(app, Answer) == 0
    ok = client.post(url, json=answers, headers={**worker, "Idempotency-Key": "k" * 200})
    assert ok.status_code == 200, ok.get_json()


BAD_SUBMITS: list[tuple[dict[str, Any], str]] = [
    ({}, "answers"),
    ({"answers": []}, "answers"),
    ({"answers": "cat"}, "answers"),
    ({"answers": [{"item_id": "1", "label": "cat"}]}, "answers.0.item_id"),
    ({"answers": [{"item_id": 1.0, "label": "cat"}]}, "answers.0.item_id"),
    ({"answers": [{"item_id": 0, "label": "cat"}]}, "answers.0.item_id"),
    ({"answers": [{"item_id": 2**63, "label": "cat"}]}, "answers.0.item_id"),
    ({"answers": [{"item_id": 1}]}, "answers.0.label"),
    ({"answers": [{"item_id": 1, "label": ""}]}, "answers.0.label"),
    ({"answers": [{"item_id": 1, "label": ["cat"]}]}, "answers.0.label"),
    ({"answers": [{"item_id": 1, "label": "c\x00t"}]}, "answers.0.label"),
    ({"answers": [{"item_id": 1, "label": "cat", "bogus": 1}]}, "answers.0.bogus"),
    ({"answers": [{"item_id": 1, "label": "cat"}], "bogus": 1}, "bogus"),
    ({"answers": [{"item_id": 1, "label": "cat"}, {"item_id": 1, "label": "dog"}]}, "answers"),
]


def test_submit_body_is_validated(
    app: Flask, client: FlaskClient, requester: dict[str, str], worker: dict[str, str]
) -> None:
    task = _lease(client, app, requester, worker)
    for body, field in BAD_SUBMITS:
        response = client.post(f"/v1/assignments/{task['id']}/submit", json=body, headers=worker)
        assert_error(response, 422, field)
    assert count_rows(app, Answer) == 0
    _still_leased(client, worker, task)


def test_malformed_submit_body_is_400(
    app: Flask, client: FlaskClient, requester: dict[str, str], worker: dict[str, str]
) -> None:
    task = _lease(client, app, requester, worker)
    url = f"/v1/assignments/{task['id']}/submit"
    assert_error(client.post(url, data='{"answers": [', content_type="application/json", headers=worker), 400)
    assert count_rows(app, Answer) == 0
    _still_leased(client, worker, task)


def test_lease_request_is_validated(
    app: Flask, client: FlaskClient, requester: dict[str, str], worker: dict[str, str]
) -> None:
    post_job(client, requester, items=5, golden=1)
    for body, field in [
        ({"job_id": "abc"}, "job_id"),
        ({"job_id": 0}, "job_id"),
        ({"job_id": 1.0}, "job_id"),
        ({"bogus": 1}, "bogus"),
    ]:
        assert_error(client.post("/v1/assignments", json=body, headers=worker), 422, field)
    assert count_rows(app, Assignment) == 0


def test_lease_for_an_unknown_job_is_404(
    app: Flask, client: FlaskClient, requester: dict[str, str], worker: dict[str, str]
) -> None:
    post_job(client, requester, items=5, golden=1)
    assert_error(client.post("/v1/assignments", json={"job_id": 424242}, headers=worker), 404)
    assert count_rows(app, Assignment) == 0


BAD_ACCOUNTS: list[tuple[dict[str, Any], str]] = [
    ({"role": "king", "name": "x"}, "role"),
    ({"role": "worker"}, "name"),
    ({"role": "worker", "name": ""}, "name"),
    ({"role": "worker", "name": "x", "key": "mk_mine"}, "key"),
]


def test_account_creation_is_validated(app: Flask, client: FlaskClient, operator: dict[str, str]) -> None:
    before = count_rows(app, Account)
    for body, field in BAD_ACCOUNTS:
        assert_error(client.post("/v1/accounts", json=body, headers=operator), 422, field)
    assert count_rows(app, Account) == before
