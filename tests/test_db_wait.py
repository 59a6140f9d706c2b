"""`marketplace db wait`: the api pods' init step waits for the migration job."""

from __future__ import annotations

from pathlib import Path

import psycopg

from marketplace.migrate import is_current, upgrade
from tests.conftest import PG_ADMIN, pg_database_url
from tests.serving import cli, environment


def test_db_wait_holds_until_the_schema_is_at_head(database_url: str, tmp_path: Path) -> None:
    assert is_current(database_url)
    name = f"mk_wait_{tmp_path.name[-12:].lower().replace('-', '_')}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        empty = pg_database_url(name)
        assert not is_current(empty)
        waited = cli(environment(empty, tmp_path / "var"), "db", "wait", "--timeout", "1")
        assert waited.returncode == 1 and "not at head" in waited.stderr
        upgrade(empty)
        done = cli(environment(empty, tmp_path / "var"), "db", "wait", "--timeout", "1")
        assert done.returncode == 0, done.stderr
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert not is_current(pg_database_url("mk_no_such_database_at_all"))
