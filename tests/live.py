"""A real server for client tests: `marketplace serve` (gunicorn) in a subprocess on a free port,
on a PostgreSQL database of its own (cloned from the migrated template) and the tests' Redis db.

Import the fixture into a test module: `from tests.live import live_fixture  # noqa: F401`; tests
take it as `live`.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import text

from marketplace.auth import hash_key
from marketplace.db import make_engine, session_scope
from marketplace.services import ledger
from marketplace.services.accounts import create_account
from tests.conftest import REDIS_URL, _admin, pg_database_url
from tests.serving import environment, serve


@dataclass
class LiveServer:
    url: str
    database_url: str
    env: dict[str, str]

    def key(self, role: str, name: str = "someone") -> str:
        """A new account's key, made in the database as `marketplace accounts create` does."""
        engine = make_engine(self.database_url)
        with session_scope(engine) as session:
            _, key = create_account(session, role, name)
        engine.dispose()
        return key

    def fund(self, requester_id: int, cents: int) -> None:
        engine = make_engine(self.database_url)
        with session_scope(engine) as session:
            ledger.fund(session, requester_id, cents, "USD", actor_id=0, key=None)
        engine.dispose()

    def answers_of(self, worker_key: str) -> list[tuple[dict[str, Any], str]]:
        """(item data, label) of every answer the worker with this key has stored, in answer order."""
        return self._answers(worker_key, "label")

    def values_of(self, worker_key: str) -> list[tuple[dict[str, Any], Any]]:
        """(item data, answer value) of every annotation answer the worker with this key has
        stored (`{"objects": [...]}` or `{"labels": [...]}`), in answer order."""
        return self._answers(worker_key, "value")

    def _answers(self, worker_key: str, column: str) -> list[tuple[dict[str, Any], Any]]:
        engine = make_engine(self.database_url)
        with engine.connect() as db:
            rows = db.execute(
                text(
                    f"SELECT i.data, a.{column} AS answer FROM answer a JOIN item i ON i.id = a.item_id"
                    " JOIN account w ON w.id = a.worker_id WHERE w.key_hash = :hash ORDER BY a.id"
                ),
                {"hash": hash_key(worker_key)},
            ).all()
        engine.dispose()
        return [(row.data, row.answer) for row in rows]

    def run_background_jobs(self) -> None:
        """Run what the server queued (aggregation, acceptance, payouts) with an RQ worker in burst mode."""
        done = subprocess.run(
            [sys.executable, "-m", "marketplace", "worker", "--burst"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module", name="live")
def live_fixture(pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per test module (its own database); tests make their own accounts on it."""
    name = f"mk_live_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    folder = tmp_path_factory.mktemp("live")
    env = environment(pg_database_url(name), folder / "var")
    try:
        with serve(env, folder / "serve.log", "--workers", "1", "--threads", "4", "--no-access-log") as server:
            yield LiveServer(server.base, pg_database_url(name), env)
    finally:
        redis.flushdb()
        redis.close()
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
