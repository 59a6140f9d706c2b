"""A body the API cannot read is refused as such: 415 when it is not sent as JSON (it used to be
read as no body, every field "missing"), 400 naming where JSON went wrong. Also on the hot
path's endpoints (lease and submit), with the middleware on and off. PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from marketplace.db import dispose
from marketplace.models import Answer, Assignment, Job
from tests.conftest import bearer, job_body, make_app, new_key, post_job
from tests.test_api_bad_input import assert_error, count_rows

NOT_JSON = [None, "text/plain", "application/x-www-form-urlencoded"]


@pytest.fixture(params=[True, False], ids=["hot-path", "flask-only"])
def app(request: pytest.FixtureRequest, database_url: str, redis: Redis) -> Iterator[Flask]:
    """PostgreSQL, with the lease/submit middleware on and off (conftest's `client` and
    `requester` use this app)."""
    application = make_app(database_url, HOT_PATH=request.param)
    yield application
    dispose(application)


def _post(
    client: FlaskClient, url: str, raw: str, content_type: str | None, headers: dict[str, str], method: str = "POST"
) -> Any:
    if content_type is None:  # what `requests.post(url, data=json.dumps(...))` sends
        return client.open(url, method=method, data=raw.encode(), headers=headers)
    return client.open(url, method=method, data=raw, content_type=content_type, headers=headers)


def _refused_415(response: Any) -> None:
    body = assert_error(response, 415, "Content-Type")
    assert "application/json" in body["message"]


def test_a_json_body_without_its_content_type_is_a_415_that_says_so(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    for content_type in NOT_JSON:
        _refused_415(_post(client, "/v1/jobs", json.dumps(job_body()), content_type, requester))
    assert count_rows(app, Job) == 0
    job = post_job(client, requester, items=4, golden=1, items_per_task=2)
    url = f"/v1/jobs/{job['id']}"
    for content_type in NOT_JSON:
        _refused_415(_post(client, url, json.dumps({"title": "renamed"}), content_type, requester, "PATCH"))
        response = _post(client, f"{url}/items", json.dumps([{"data": {}}]), content_type, requester)
        body = assert_error(response, 415, "Content-Type")
        assert "application/x-ndjson" in body["message"]  # the items endpoint reads JSON Lines too
    assert client.get(url, headers=requester).get_json()["title"] == "animals"
    assert client.get(url, headers=requester).get_json()["progress"]["items"] == 4
    # A request without a body needs no content type.
    assert client.post(f"{url}/pause", headers=requester).status_code == 200


def test_lease_and_submit_bodies_without_json_content_type_are_415(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    post_job(client, requester, items=6, golden=1, items_per_task=3)
    worker = bearer(new_key(app, "worker", "w"))
    for content_type in NOT_JSON:
        _refused_415(_post(client, "/v1/assignments", "{}", content_type, worker))
    assert count_rows(app, Assignment) == 0
    task = client.post("/v1/assignments", headers=worker)  # no body at all: fine
    assert task.status_code == 201, task.get_json()
    answers = json.dumps({"answers": [{"item_id": i["id"], "label": "cat"} for i in task.get_json()["items"]]})
    url = f"/v1/assignments/{task.get_json()['id']}/submit"
    for content_type in NOT_JSON:
        _refused_415(_post(client, url, answers, content_type, worker))
    assert count_rows(app, Answer) == 0
    assert _post(client, url, answers, "application/json", worker).status_code == 200


def test_operator_bodies_are_checked_too(app: Flask, client: FlaskClient) -> None:
    operator = bearer(new_key(app, "operator", "op"))
    worker_id = client.get("/v1/me", headers=bearer(new_key(app, "worker", "w"))).get_json()["id"]
    _refused_415(_post(client, "/v1/accounts", json.dumps({"role": "worker", "name": "x"}), None, operator))
    _refused_415(_post(client, f"/v1/workers/{worker_id}/ban", json.dumps({"reason": "x"}), "text/plain", operator))
    assert client.get(f"/v1/workers/{worker_id}", headers=operator).get_json()["status"] == "active"


BROKEN = [
    ('{"title": "x",', "line 1, column 15 (char 14)"),
    ('{\n  "title": "x"\n  "instructions": ""\n}', "line 3, column 3 (char 19)"),
]


def test_invalid_json_is_a_400_naming_the_position(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    for raw, where in BROKEN:
        body = assert_error(_post(client, "/v1/jobs", raw, "application/json", requester), 400, "_body")
        assert where in body["message"] and where in json.dumps(body["errors"]), body
    body = assert_error(
        client.post("/v1/jobs", data=b"\xff{}", content_type="application/json", headers=requester), 400
    )
    assert "byte 0" in body["message"]
    assert_error(_post(client, "/v1/jobs", "", "application/json", requester), 422, "title")
    assert count_rows(app, Job) == 0


def test_invalid_json_on_lease_and_submit_names_the_position(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    post_job(client, requester, items=6, golden=1, items_per_task=3)
    worker = bearer(new_key(app, "worker", "w"))
    body = assert_error(_post(client, "/v1/assignments", '{"job_id": }', "application/json", worker), 400, "_body")
    assert "line 1, column 12 (char 11)" in body["message"]
    assert count_rows(app, Assignment) == 0
    task = client.post("/v1/assignments", json={}, headers=worker).get_json()
    url = f"/v1/assignments/{task['id']}/submit"
    body = assert_error(_post(client, url, '{"answers": [', "application/json", worker), 400, "_body")
    assert "line 1, column 14 (char 13)" in body["message"]
    assert count_rows(app, Answer) == 0
    assert client.get(f"/v1/assignments/{task['id']}", headers=worker).get_json()["state"] == "leased"
