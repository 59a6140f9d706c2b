"""A fresh database with the app on it, in this process: what the in-process benchmarks share.

`fresh_app` creates a database beside an admin URL, migrates it, makes the app on it (rate
limits off, lease caps out of the way), a requester funded with plenty and some workers, and
drops the database at the end, whatever happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class InProcess:
    app: Any
    client: Any  # the app's test client
    headers: dict[str, str]  # the requester's
    workers: list[int]  # worker account ids


def database_url(admin: str, name: str) -> str:
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


@contextmanager
def fresh_app(admin_url: str, prefix: str, workers: int) -> Iterator[InProcess]:
    from marketplace import create_app
    from marketplace.db import dispose, get_engine, session_scope
    from marketplace.migrate import upgrade
    from marketplace.services import ledger
    from marketplace.services.accounts import create_account

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = database_url(admin_url, name)
        upgrade(url)
        app = create_app({"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/5", "RATE_LIMITS": False})
        app.config.update(MAX_OPEN_LEASES=10**6, MAX_OPEN_LEASES_PER_JOB=10**6)
        with session_scope(get_engine(app)) as session:
            requester, key = create_account(session, "requester", "bench")
            ledger.fund(session, int(requester.id or 0), 10**12, "USD", actor_id=0, key=None)
            ids = [int(create_account(session, "worker", f"w{n}")[0].id or 0) for n in range(workers)]
        try:
            yield InProcess(app, app.test_client(), {"Authorization": f"Bearer {key}"}, ids)
        finally:
            dispose(app)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
