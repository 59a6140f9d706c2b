"""A real server for client tests: `marketplace serve` (gunicorn) in a subprocess on a free port,
on a PostgreSQL database of its own (cloned from the migrated template) and the tests' Redis db.

Import the fixture into a test module: `from tests.live import live_fixture  # noqa: F401`; tests
take it as `live`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis import Redis
from sqlalchemy import text

from marketplace.auth import hash_key
from marketplace.db import make_engine, session_scope
from marketplace.services import ledger
from marketplace.services.accounts import create_account
from tests.conftest import REDIS_URL, _admin, pg_database_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def start_server(database_url: str, port: int, **settings: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
    env.update({"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, **settings})
    command = [sys.executable, "-m", "marketplace", "serve", "--bind", f"127.0.0.1:{port}"]
    server = subprocess.Popen(
        [*command, "--workers", "1", "--threads", "4", "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server, env
        except httpx.HTTPError:
            time.sleep(0.1)
        if server.poll() is not None:
            break
    server.kill()
    raise RuntimeError("the server did not start")


@pytest.fixture(scope="module", name="live")
def live_fixture(pg_template: str) -> Iterator[LiveServer]:
    """One server per test module (its own database); tests make their own accounts on it."""
    name = f"mk_live_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    port = free_port()
    server, env = start_server(pg_database_url(name), port)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", pg_database_url(name), env)
    finally:
        server.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: no wait for idle keep-alive clients
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        redis.flushdb()
        redis.close()
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
