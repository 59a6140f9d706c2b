"""The short way for lease and submit (`marketplace/api/hot.py`) answers as the Flask app does.

The same scenarios run twice on PostgreSQL, once with the short way on and once with it off
(`HOT_PATH=False`: every request through flask-smorest), and must give the same statuses and
bodies (ids and times aside); odd requests must reach the Flask app, which names the field.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from marketplace import observe
from marketplace.api import hot
from marketplace.db import get_engine, session_scope
from marketplace.models import Assignment, utcnow
from marketplace.pool import lease, submit
from marketplace.schemas import AssignmentSchema, SubmitResultSchema
from tests.conftest import bearer, new_key, post_job

Headers = dict[str, str]


def _count_flask_calls(app: Flask) -> list[str]:
    """Record every request that reaches the Flask app behind the middleware."""
    middleware: Any = app.wsgi_app
    assert isinstance(middleware, observe.Observe)  # request ids, metrics and logs wrap everything
    while not isinstance(middleware, hot.HotPath):  # past the rate limits
        middleware = middleware.inner
    inner: Any = middleware.inner
    reached: list[str] = []

    def counting(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        reached.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return inner(environ, start_response)

    middleware.inner = counting
    return reached


def _scrub(body: Any) -> Any:
    """Ids and times differ between two runs; the rest must not."""
    if isinstance(body, dict):
        scrubbed = {
            k: "*" if k in {"id", "expires_at", "submitted_at", "item_id"} else _scrub(v) for k, v in body.items()
        }
        if "items" in body:  # which items a lease picks is random
            scrubbed["items"] = [sorted(item) for item in body["items"]]
        return scrubbed
    if isinstance(body, list):
        return [_scrub(v) for v in body]
    return body


def _scenario(app: Flask, reached: list[str]) -> list[tuple[str, int, Any, bool]]:
    """Plain and odd requests on both endpoints; what each answered, and whether it reached Flask."""
    client: FlaskClient = app.test_client()
    requester = bearer(new_key(app, "requester"))
    job = post_job(client, requester, items=12, golden=3, overlap=2, items_per_task=3, golden_ratio=0.0)
    me, other = bearer(new_key(app, "worker", "me")), bearer(new_key(app, "worker", "other"))
    seen: list[tuple[str, int, Any, bool]] = []

    mark = [len(reached)]

    def record(name: str, response: Any) -> Any:
        flask = any(r.startswith("POST /v1/assignments") for r in reached[mark[0] :])
        mark[0] = len(reached)
        seen.append((name, response.status_code, _scrub(response.get_json(silent=True)), flask))
        return response.get_json(silent=True)

    task = record("lease", client.post("/v1/assignments", json={"job_id": job["id"]}, headers=me))
    labels = job["annotation"]["labels"]
    answers = [{"item_id": i["id"], "label": labels[0]} for i in task["items"]]
    submit = f"/v1/assignments/{task['id']}/submit"
    record("submit by another worker", client.post(submit, json={"answers": answers}, headers=other))
    record("submit an unknown label", client.post(submit, json={"answers": [{**answers[0], "label": "x"}]}, headers=me))
    record("submit a string id", client.post(submit, json={"answers": [{**answers[0], "item_id": "1"}]}, headers=me))
    record("submit an unknown field", client.post(submit, json={"answers": answers, "x": 1}, headers=me))
    record("submit twice the same item", client.post(submit, json={"answers": answers[:1] * 2}, headers=me))
    record("submit no body", client.post(submit, headers=me))
    record("submit not JSON", client.post(submit, data="{", content_type="application/json", headers=me))
    long_key = {**me, "Idempotency-Key": "k" * 201}
    record("submit a long key", client.post(submit, json={"answers": answers}, headers=long_key))
    record("submit a part", client.post(submit, json={"answers": answers[:1]}, headers=me))
    record("submit", client.post(submit, json={"answers": answers}, headers={**me, "Idempotency-Key": "k1"}))
    record("submit retried", client.post(submit, json={"answers": answers}, headers={**me, "Idempotency-Key": "k1"}))
    record("submit again", client.post(submit, json={"answers": answers}, headers=me))
    record("submit without a key", client.post(submit, json={"answers": answers}))
    record("submit with a requester key", client.post(submit, json={"answers": answers}, headers=requester))
    record(
        "submit an unknown assignment",
        client.post("/v1/assignments/999999/submit", json={"answers": answers}, headers=me),
    )
    record("lease a boolean job", client.post("/v1/assignments", json={"job_id": True}, headers=me))
    record("lease an unknown field", client.post("/v1/assignments", json={"job": 1}, headers=me))
    record("lease an unknown job", client.post("/v1/assignments", json={"job_id": 999999}, headers=me))
    record("lease any job", client.post("/v1/assignments", headers=other))
    late = record("lease to expire", client.post("/v1/assignments", json={"job_id": job["id"]}, headers=me))
    with session_scope(get_engine(app)) as session:
        session.execute(
            update(Assignment).where(Assignment.id == late["id"]).values(expires_at=utcnow() - timedelta(hours=1))
        )
    late_answers = [{"item_id": i["id"], "label": labels[1]} for i in late["items"]]
    record(
        "submit late", client.post(f"/v1/assignments/{late['id']}/submit", json={"answers": late_answers}, headers=me)
    )
    operator = bearer(new_key(app, "operator"))
    worker_id = client.get("/v1/me", headers=other).get_json()["id"]
    assert client.post(f"/v1/workers/{worker_id}/ban", json={"reason": "spam"}, headers=operator).status_code == 200
    record("lease when banned", client.post("/v1/assignments", json={"job_id": job["id"]}, headers=other))
    while True:  # the rest of the job, then nothing left
        task = record("lease the rest", client.post("/v1/assignments", json={"job_id": job["id"]}, headers=me))
        if task is None:
            break
        rest = [{"item_id": i["id"], "label": labels[0]} for i in task["items"]]
        record(
            "submit the rest", client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": rest}, headers=me)
        )
    return seen


@pytest.fixture(scope="module")
def answers_of_both() -> dict[bool, list[tuple[str, int, Any, bool]]]:
    return {}


# What the short way leaves to the Flask app: bodies it does not take as they are, and callers
# it does not know as workers. Everything else, refusals by the services included, it serves.
ODD = {
    "submit a string id",
    "submit an unknown field",
    "submit twice the same item",
    "submit no body",
    "submit not JSON",
    "submit without a key",
    "submit with a requester key",
    "lease a boolean job",
    "lease an unknown field",
}


def test_both_ways_answer_alike(either_app: Flask, answers_of_both: dict[bool, Any]) -> None:
    reached = _count_flask_calls(either_app)
    seen = _scenario(either_app, reached)
    hot_on = either_app.config["HOT_PATH"]
    answers_of_both[hot_on] = seen
    statuses = {(name, status) for name, status, _, _ in seen}
    expected = {("lease", 201), ("submit", 200), ("lease the rest", 204), ("submit late", 409)}
    expected.add(("submit a long key", 422))
    assert expected <= statuses, statuses
    to_flask = {name for name, _, _, flask in seen if flask}
    assert to_flask == (ODD if hot_on else {name for name, _, _, _ in seen})
    if len(answers_of_both) == 2:
        hot_seen, flask_seen = answers_of_both[True], answers_of_both[False]
        assert [(n, s) for n, s, _, _ in hot_seen] == [(n, s) for n, s, _, _ in flask_seen]
        for (name, status, body, _), (_, _, other, _) in zip(hot_seen, flask_seen, strict=True):
            assert body == other, (name, status, body, other)


def test_the_short_ways_bodies_are_the_schemas_dumps(app: Flask) -> None:
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    job = post_job(client, requester, items=6, golden=2, overlap=1, items_per_task=3)
    worker = client.get("/v1/me", headers=bearer(new_key(app, "worker"))).get_json()["id"]
    with app.app_context():
        task = lease.lease_task(get_engine(app), worker, job["id"])
        assert task is not None
        assert hot.task_json(task) == AssignmentSchema().dump(task)
        answers = [{"item_id": i["id"], "label": "cat"} for i in task.items]
        result = submit.submit(get_engine(app), worker, task.id, answers, None, utcnow())
        assert hot.submit_json(result) == SubmitResultSchema().dump(result)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, None),
        ({}, None),
        ({"job_id": 7}, 7),
        ({"job_id": 0}, False),
        ({"job_id": True}, False),
        ({"job_id": "7"}, False),
        ({"job_id": 2**63}, False),
        ({"job_id": 7, "x": 1}, False),
        ([], False),
    ],
)
def test_lease_bodies_the_short_way_takes(body: Any, expected: Any) -> None:
    assert hot.lease_body(body) is expected if expected in (None, False) else hot.lease_body(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        {"answers": []},
        {"answers": [{"item_id": 1}]},
        {"answers": [{"item_id": 1, "label": ""}]},
        {"answers": [{"item_id": 1, "label": "x" * 201}]},
        {"answers": [{"item_id": 1.0, "label": "a"}]},
        {"answers": [{"item_id": 1, "label": "a"}, {"item_id": 1, "label": "b"}]},
        {"answers": [{"item_id": 1, "label": "a"}] + [{"item_id": i, "label": "a"} for i in range(2, 102)]},
        {"answers": {"item_id": 1, "label": "a"}},
        {"answers": [{"item_id": 1, "label": "a", "extra": 1}]},
        {"answers": [{"item_id": 1, "label": "a"}], "extra": 1},
        {"answers": [{"item_id": 1, "objects": "none"}]},
        {"answers": [{"item_id": 1, "objects": [1]}]},
        {"answers": [{"item_id": 1, "objects": [{"lab\x00el": "a"}]}]},
        {"answers": [{"item_id": 1, "objects": [{}] * 1001}]},
        {"answers": [{"item_id": 1, "objects": [], "label": "a"}]},
        {"answers": [{"item_id": 1, "labels": [""]}]},
        {"answers": [{"item_id": 1, "labels": "a"}]},
        {"answers": [{"item_id": 1, "labels": ["a"] * 201}]},
    ],
)
def test_submit_bodies_the_short_way_leaves_to_the_schema(body: Any) -> None:
    assert hot.submit_answers(body) is None
    assert hot.submit_answers({"answers": [{"item_id": 1, "label": "a"}, {"item_id": 2, "label": "b"}]}) is not None


def test_annotation_answers_take_the_short_way_to_the_pools_checks() -> None:
    objects = [{"item_id": 1, "objects": [{"label": "a", "bbox": [1, 2, 3, 4]}]}, {"item_id": 2, "objects": []}]
    assert hot.submit_answers({"answers": objects}) == objects
    labels = [{"item_id": 1, "labels": ["a", "b"]}, {"item_id": 2, "labels": []}]
    assert hot.submit_answers({"answers": labels}) == labels


def test_an_unexpected_error_on_the_short_way_is_a_json_500_without_detail(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    job = post_job(client, requester, items=6, golden=2, overlap=1, items_per_task=3)
    worker = bearer(new_key(app, "worker"))
    assert client.get("/v1/me", headers=worker).status_code == 200  # the key is known now

    def broken(*_: Any) -> None:
        raise RuntimeError("mk_secret-key-material")

    monkeypatch.setattr(lease, "lease_task", broken)
    reached = _count_flask_calls(app)
    response = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)
    assert reached == [], "the short way handed the request on"
    assert response.status_code == 500
    assert response.get_json() == {"code": 500, "status": "Internal Server Error", "message": "internal error"}
    assert b"secret" not in response.data


def test_a_chunked_body_is_read_not_ignored(app: Flask) -> None:
    """No Content-Length, the body chunked (gunicorn passes it on that way): the job id in it counts."""
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    post_job(client, requester, items=6, golden=2, overlap=1, items_per_task=3)
    key = new_key(app, "worker")
    assert client.get("/v1/me", headers=bearer(key)).status_code == 200
    raw = b'{"job_id": 999999}'
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/assignments",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "wsgi.input_terminated": True,
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
    }
    statuses: list[str] = []
    body = b"".join(app.wsgi_app(environ, lambda status, _headers, *_: statuses.append(status)))
    assert statuses[0].startswith("404"), (statuses, body)


def test_every_pool_statement_runs_on_native_placeholders() -> None:
    """psycopg converts %(name)s placeholders on every call and caches the conversion only for
    statements up to 4096 bytes; pool statements are converted once, to $1, $2, ... (RawCursor)."""
    from marketplace.pool import connection, lease_sql, submit

    statements = {
        f"{module.__name__}.{name}": value
        for module in (lease_sql, submit)
        for name, value in vars(module).items()
        if name.isupper() and "SELECT" in str(value) and not name.endswith("_HOLD")  # the ledger's fragment
    }
    assert "marketplace.pool.lease_sql.LEASE" in statements and "marketplace.pool.submit.SUBMIT" in statements
    for name, statement in statements.items():
        assert isinstance(statement, connection.Statement), name
        assert "%(" not in statement.sql and "%s" not in statement.sql, name
        assert [f"${n}" for n in range(1, len(statement.names) + 1)] == sorted(
            set(re.findall(r"\$\d+", statement.sql)), key=lambda p: int(p[1:])
        ), name
    made = connection.Statement.of("SELECT a , b -- note\nFROM t WHERE x = %(x)s AND y IN ( %(y)s , %(x)s )")
    assert made == connection.Statement("SELECT a,b FROM t WHERE x=$1 AND y IN($2,$1)", ("x", "y"))
    assert made.args({"y": 2, "x": 1, "z": 3}) == [1, 2]
