"""The operators' command line: schema, accounts and keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import inspect

from marketplace.cli import main
from marketplace.db import make_engine
from tests.conftest import bearer, make_app


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def test_db_upgrade_creates_the_schema(db_env: str) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    engine = make_engine(db_env)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "account",
        "job",
        "item",
        "slot",
        "assignment",
        "assignmentitem",
        "answer",
        "aggregate",
        "alembic_version",
    } <= tables


def test_accounts_create_prints_a_working_key_last(db_env: str, redis: Redis) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(main, ["accounts", "create", "--role", "operator", "--name", "ops"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("mk_") and " " not in key
    app = make_app(db_env)
    me = app.test_client().get("/v1/me", headers=bearer(key))
    assert me.status_code == 200
    assert me.get_json()["role"] == "operator"
    other = runner.invoke(main, ["accounts", "create", "--role", "worker", "--name", "w"])
    assert other.output.strip().splitlines()[-1] != key


def test_accounts_create_rejects_an_unknown_role(db_env: str) -> None:
    result = CliRunner().invoke(main, ["accounts", "create", "--role", "admin", "--name", "x"])
    assert result.exit_code == 2
    assert "role" in result.output
