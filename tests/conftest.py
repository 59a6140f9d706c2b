"""Fixtures: a fresh app per test on a fresh PostgreSQL database, real Redis.

The servers are the ones named by `TEST_POSTGRES_ADMIN` (a database to connect to as an admin)
and `TEST_REDIS_URL` when set (`.ci/run` sets them to the machine's services); otherwise the
session starts an embedded PostgreSQL and Redis of its own (`marketplace.embedded`), so
`python -m pytest` needs nothing running. Databases are cloned from a template migrated once
per session with alembic, so every test also runs on the real migration. Redis uses a spare db
number, flushed around each test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy.engine import make_url

from marketplace import auth, create_app, embedded, queue
from marketplace.db import dispose, get_engine, session_scope
from marketplace.migrate import upgrade
from marketplace.services import ledger
from marketplace.services.accounts import create_account

pytest_plugins = ["tests.faults"]  # own PostgreSQL and Redis servers for the fault tests

TEMPLATE = f"mk_template_{os.getpid()}"
_EMBEDDED = Path(tempfile.gettempdir()) / f"marketplace-tests-{os.getpid()}"


def _servers() -> tuple[str, str]:
    """(PostgreSQL admin URL, Redis URL): the named servers, or embedded ones started now."""
    admin, redis_url = os.environ.get("TEST_POSTGRES_ADMIN"), os.environ.get("TEST_REDIS_URL")
    if not admin:
        admin = embedded.postgres_url(_EMBEDDED, "postgres")
    if not redis_url:
        redis_url = embedded.redis_url(_EMBEDDED, db=11)
    return admin, redis_url


PG_ADMIN, REDIS_URL = _servers()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the embedded servers of this session (if any) and remove their folder."""
    if _EMBEDDED.exists():
        queue.close_clients()  # the apps' connections: with one open, the embedded Redis would not stop
        embedded.stop(_EMBEDDED)
        shutil.rmtree(_EMBEDDED, ignore_errors=True)


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_ADMIN, autocommit=True)


def pg_database_url(name: str) -> str:
    """The URL of database `name` on the test server (the admin URL with another database)."""
    return make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    upgrade(pg_database_url(TEMPLATE))
    yield TEMPLATE
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


def _scratch_database(prefix: str, template: str | None) -> Iterator[str]:
    """A database of one test's own (a copy of `template`, or empty), dropped after it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    yield pg_database_url(name)
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_template: str) -> Iterator[str]:
    """A fresh database for one test, cloned from the migrated template."""
    yield from _scratch_database("mk_test", pg_template)


@pytest.fixture
def blank_database_url() -> Iterator[str]:
    """A fresh, empty database (no schema) for one test."""
    yield from _scratch_database("mk_blank", None)


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
        # Every test client is one address: walks over every endpoint with bad keys are not
        # key guessing, and concurrency tests hammer one worker's key on purpose
        # (tests/test_limits_keys.py sets its own limits).
        "RATE_LIMIT_FAILED_AUTH": "100000/minute",
        "RATE_LIMIT_LEASES": "100000/second",
        "RATE_LIMIT_SUBMITS": "100000/second",
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
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(params=[True, False], ids=["hot", "flask"])
def either_app(request: pytest.FixtureRequest, database_url: str, redis: Redis) -> Iterator[Flask]:
    """The app with the hot-path middleware on, then off (every request through flask-smorest)."""
    application = make_app(database_url, HOT_PATH=request.param)
    yield application
    dispose(application)


@pytest.fixture
def rq_env(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """RQ jobs build their own app from the environment, like `marketplace worker` does."""
    import workers.jobs

    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    workers.jobs._apps.clear()


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
    payload = [{"data": {"url": f"img-{i}.jpg", "w": 10, "h": 10}} for i in range(items)]
    payload += [{"data": {"url": f"img-g{i}.jpg", "w": 10, "h": 10}, "answer": "cat"} for i in range(golden)]
    return create_job(client, headers, job_body(**overrides), payload, launch=launch)


def create_job(
    client: FlaskClient, headers: dict[str, str], body: dict[str, Any], items: list[dict[str, Any]], *, launch: bool
) -> dict[str, Any]:
    """Post a job, upload `items` (if any), and fund and launch it when asked; checked at each step."""
    response = client.post("/v1/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    job: dict[str, Any] = response.get_json()
    if items:
        added = client.post(f"/v1/jobs/{job['id']}/items", json=items, headers=headers)
        assert added.status_code == 201, added.get_json()
    if launch:
        fund(client, headers, job["budget_cents"])
        launched = client.post(f"/v1/jobs/{job['id']}/launch", headers=headers)
        assert launched.status_code == 200, launched.get_json()
    return job


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
