"""The operators' command line: schema, accounts and keys."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import inspect, text

from marketplace import cli
from marketplace.cli import main
from marketplace.db import make_engine
from tests.conftest import REDIS_URL, bearer, make_app


@pytest.fixture
def db_env(blank_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", blank_database_url)
    return blank_database_url


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


def test_fund_and_ledger_check_from_the_command_line(db_env: str, redis: Redis) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    created = runner.invoke(main, ["accounts", "create", "--role", "requester", "--name", "r"])
    key = created.output.strip().splitlines()[-1]
    requester_id = make_app(db_env).test_client().get("/v1/me", headers=bearer(key)).get_json()["id"]
    funded = runner.invoke(main, ["accounts", "fund", "--account", str(requester_id), "--amount-cents", "500"])
    assert funded.exit_code == 0, funded.output
    again = ["accounts", "fund", "--account", str(requester_id), "--amount-cents", "250", "--key", "k1"]
    assert runner.invoke(main, again).exit_code == 0
    assert "balance 750 USD" in runner.invoke(main, again).output  # the same key credits once
    assert runner.invoke(main, ["accounts", "fund", "--account", "999", "--amount-cents", "5"]).exit_code == 2
    assert runner.invoke(main, ["accounts", "fund", "--account", "1", "--amount-cents", "-5"]).exit_code == 2
    checked = runner.invoke(main, ["ledger", "check"])
    assert checked.exit_code == 0 and "balanced" in checked.output
    engine = make_engine(db_env)
    with engine.begin() as connection:  # a kept balance that no longer matches its entries
        connection.execute(text("UPDATE ledgerbalance SET balance = balance + 1 WHERE account LIKE 'requester:%'"))
    engine.dispose()
    broken = runner.invoke(main, ["ledger", "check"])
    assert broken.exit_code == 1 and f"requester:{requester_id}: balance 751" in broken.output


@pytest.mark.parametrize(("flag", "logged"), [([], True), (["--access-log"], True), (["--no-access-log"], False)])
def test_serve_runs_gunicorn_with_or_without_an_access_log(
    flag: list[str], logged: bool, db_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[tuple[list[str], dict[str, str]]] = []
    assert CliRunner().invoke(main, ["db", "upgrade"]).exit_code == 0
    monkeypatch.setenv("REDIS_URL", REDIS_URL)  # no embedded server for this
    monkeypatch.setattr(cli, "_run_child", lambda command, env: commands.append((command, env)) or 0)
    result = CliRunner().invoke(main, ["serve", "--bind", "127.0.0.1:1", *flag])
    assert result.exit_code == 0, result.output
    command, env = commands[0]
    assert env["MARKETPLACE_ACCESS_LOG"] == str(logged).lower()  # the app's JSON access line
    assert command[command.index("--config") + 1] == "python:marketplace.gunicorn_conf"  # the deployments' settings
    assert command[-1] == "marketplace.wsgi:app"


BEFORE_UPGRADE = [
    ["accounts", "create", "--role", "operator", "--name", "ops"],
    ["accounts", "fund", "--account", "1", "--amount-cents", "5"],
    ["ledger", "check"],
    ["serve", "--bind", "127.0.0.1:1"],
    ["worker", "--burst"],
]


@pytest.mark.parametrize("args", BEFORE_UPGRADE, ids=lambda a: " ".join(a[:2]))
def test_a_command_run_before_db_upgrade_says_to_run_it(
    args: list[str], blank_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", blank_database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)  # no embedded server for this
    started: list[list[str]] = []
    monkeypatch.setattr(cli, "_run_child", lambda command, _env: started.append(command) or 0)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "no schema yet: run `marketplace db upgrade` first" in result.output
    assert "Traceback" not in result.output and started == []
    assert CliRunner().invoke(main, ["db", "upgrade"]).exit_code == 0
    if args[0] == "accounts" and args[1] == "create":
        assert CliRunner().invoke(main, args).exit_code == 0


def test_a_schema_behind_the_code_is_named_too(blank_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", blank_database_url)
    assert CliRunner().invoke(main, ["db", "upgrade", "--revision", "70f899e67193"]).exit_code == 0
    result = CliRunner().invoke(main, ["ledger", "check"])
    assert result.exit_code == 1 and "schema is at revision 70f899e67193" in result.output
    assert "run `marketplace db upgrade`" in result.output


def test_an_unreachable_database_is_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    result = CliRunner().invoke(main, ["ledger", "check"])
    assert result.exit_code == 1 and "cannot open the database" in result.output
    assert "Traceback" not in result.output
