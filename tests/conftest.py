"""Fixtures: a fresh app per test on a fresh database (SQLite file or PostgreSQL), real Redis.

PostgreSQL databases are cloned from a template migrated once per session with alembic, so
every test also runs on the real migration. Redis uses a spare db number, flushed around
each test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from marketplace import auth, create_app
from marketplace.db import dispose, get_engine, session_scope
from marketplace.migrate import upgrade
from marketplace.services import ledger
from marketplace.services.accounts import create_account

PG_ADMIN = os.environ.get("TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
TEMPLATE = f"mk_template_{os.getpid()}"


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_ADMIN, autocommit=True)


def _pg_url(name: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    upgrade(_pg_url(TEMPLATE))
    yield TEMPLATE
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = f"mk_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_url(name)
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    url = f"sqlite:///{tmp_path / 'test.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Every test that takes this runs on both databases."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def redis() -> Iterator[Redis]:
    connection = Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


def make_app(database_url: str, **extra: Any) -> Flask:
    config = {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "DATA_DIR": "/tmp/marketplace-tests",
    }
    config.update(extra)
    auth.forget()
    return create_app(config)


@pytest.fixture
def app(database_url: str, redis: Redis) -> Iterator[Flask]:
    application = make_app(database_url)
    yield application
    dispose(application)


@pytest.fixture
def pg_app(pg_url: str, redis: Redis) -> Iterator[Flask]:
    """PostgreSQL only: for the concurrency tests."""
    application = make_app(pg_url)
    yield application
    dispose(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def pg_client(pg_app: Flask) -> FlaskClient:
    return pg_app.test_client()


@pytest.fixture
def pg_requester(pg_app: Flask) -> dict[str, str]:
    return bearer(new_key(pg_app, "requester", "req"))


def new_key(app: Flask, role: str, name: str = "someone") -> str:
    with session_scope(get_engine(app)) as session:
        _, key = create_account(session, role, name)
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def requester(app: Flask) -> dict[str, str]:
    return bearer(new_key(app, "requester", "req"))


@pytest.fixture
def operator(app: Flask) -> dict[str, str]:
    return bearer(new_key(app, "operator", "op"))


LABELS = ["cat", "dog", "bird"]


def job_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "animals",
        "instructions": "pick the animal",
        "annotation": {"type": "classification", "labels": LABELS},
        "overlap": 3,
        "golden_ratio": 0.2,
        "items_per_task": 5,
        "reward_cents": 2,
        "budget_cents": 100_000,
        "aggregation": "majority_vote",
    }
    body.update(overrides)
    if body.get("pricing") is not None and overrides.get("reward_cents") is None:
        body.pop("reward_cents")  # pricing replaces the flat shorthand
    return body


def post_job(
    client: FlaskClient,
    headers: dict[str, str],
    items: int = 20,
    golden: int = 4,
    launch: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """A job with `items` real items and `golden` golden ones (answer = 'cat')."""
    response = client.post("/v1/jobs", json=job_body(**overrides), headers=headers)
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    payload = [{"data": {"url": f"img-{i}.jpg", "w": 10, "h": 10}} for i in range(items)]
    payload += [{"data": {"url": f"img-g{i}.jpg", "w": 10, "h": 10}, "answer": "cat"} for i in range(golden)]
    added = client.post(f"/v1/jobs/{job['id']}/items", json=payload, headers=headers)
    assert added.status_code == 201, added.get_json()
    if launch:
        fund(client, headers, job["budget_cents"])
        launched = client.post(f"/v1/jobs/{job['id']}/launch", headers=headers)
        assert launched.status_code == 200, launched.get_json()
    return job  # type: ignore[no-any-return]


def fund(client: FlaskClient, headers: dict[str, str], amount: int) -> int:
    """Credit the requester behind `headers` (as an operator would); its balance after."""
    requester_id = client.get("/v1/me", headers=headers).get_json()["id"]
    with session_scope(get_engine(client.application)) as session:
        return int(ledger.fund(session, requester_id, amount, "USD", actor_id=0, key=None)["balance_cents"])


def work_through(
    client: FlaskClient, headers: dict[str, str], job_id: int, label: str = "dog", limit: int = 100
) -> int:
    """Lease and submit (every item answered `label`) until there is no more work; tasks done."""
    done = 0
    for _ in range(limit):
        lease = client.post("/v1/assignments", json={"job_id": job_id}, headers=headers)
        if lease.status_code != 201:
            return done
        task = lease.get_json()
        answers = [{"item_id": i["id"], "label": label} for i in task["items"]]
        submitted = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers)
        assert submitted.status_code == 200, submitted.get_json()
        done += 1
    return done
