"""`marketplace`: the operators' command line (serve, worker, db upgrade, accounts, demo)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from werkzeug.utils import import_string

from marketplace import gunicorn_conf
from marketplace.config import database_url, load, redis_url


def _config() -> dict[str, object]:
    return load()


def _database_url() -> str:
    """DATABASE_URL, or the embedded server's, started (or reused) for this command."""
    return database_url(load())


def _migrated_database_url() -> str:
    """The database (`_database_url`), once its schema is known to be current: a command run
    before `marketplace db upgrade` says to run it (instead of failing on a missing table)."""
    from sqlalchemy.exc import SQLAlchemyError

    from marketplace.migrate import schema_problem

    url = _database_url()
    try:
        problem = schema_problem(url)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise click.ClickException(f"cannot open the database ({reason}); is DATABASE_URL right?") from None
    if problem is not None:
        raise click.ClickException(f"{problem}: run `marketplace db upgrade` first")
    return url


@click.group()
def main() -> None:
    """Crowdsourcing marketplace: configuration comes from DATABASE_URL and REDIS_URL (unset:
    embedded PostgreSQL and Redis under MARKETPLACE_DATA_DIR, default ./var)."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or migrate the schema (alembic)."""
    from marketplace.migrate import upgrade

    upgrade(_database_url(), revision)
    click.echo(f"schema at {revision}")


@db.command("wait")
@click.option("--timeout", default=600, show_default=True, type=int, help="seconds")
def db_wait(timeout: int) -> None:
    """Wait until the schema is at this code's head (a pod's init step while the migration job
    runs); exit 1 after --timeout."""
    from marketplace.migrate import is_current

    url = _database_url()
    deadline = time.monotonic() + timeout
    while not is_current(url):
        if time.monotonic() > deadline:
            click.echo(f"schema not at head after {timeout} s", err=True)
            raise SystemExit(1)
        time.sleep(2)
    click.echo("schema at head")


@main.group()
def accounts() -> None:
    """Accounts and keys."""


@accounts.command("create")
@click.option("--role", type=click.Choice(["requester", "worker", "operator"]), required=True)
@click.option("--name", required=True)
def accounts_create(role: str, name: str) -> None:
    """Create an account; its key is printed alone on the last line, once."""
    from marketplace.db import make_engine, session_scope
    from marketplace.services.accounts import create_account

    engine = make_engine(_migrated_database_url())
    with session_scope(engine) as session:
        account, key = create_account(session, role, name)
        click.echo(f"created {role} {account.id} ({name}); keep this key, it is not shown again:")
    engine.dispose()
    click.echo(key)


def _resolved_env() -> dict[str, str]:
    """The environment for child processes, with the embedded servers started if needed (they
    stop when this process and the others using them have exited)."""
    config = load()
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url(config)
    env["REDIS_URL"] = redis_url(config)
    return env


@accounts.command("fund")
@click.option("--account", "account_id", type=int, required=True, help="the requester's account id")
@click.option("--amount-cents", type=click.IntRange(min=1), required=True)
@click.option("--key", default=None, help="idempotency key: the same key never credits twice")
def accounts_fund(account_id: int, amount_cents: int, key: str | None) -> None:
    """Credit a requester's funds (money received outside: there is no card processor)."""
    from marketplace.db import make_engine, session_scope
    from marketplace.models import Account
    from marketplace.services import ledger

    config = _config()
    engine = make_engine(_migrated_database_url())
    with session_scope(engine) as session:
        account = session.get(Account, account_id)
        if account is None or account.role != "requester":
            raise click.BadParameter(f"no requester {account_id}", param_hint="--account")
        result = ledger.fund(session, account_id, amount_cents, str(config["CURRENCY"]), actor_id=0, key=key)
    engine.dispose()
    click.echo(f"requester {account_id} balance {result['balance_cents']} {result['currency']} cents")


@main.group("ledger")
def ledger_group() -> None:
    """The money ledger."""


@ledger_group.command("check")
def ledger_check() -> None:
    """Recompute the ledger from its entries; exit 1 and list the problems when it is not sound."""
    from marketplace.db import make_engine, session_scope
    from marketplace.services import ledger_audit

    engine = make_engine(_migrated_database_url())
    with session_scope(engine) as session:
        problems = ledger_audit.check(session)
    engine.dispose()
    for problem in problems:
        click.echo(problem)
    if problems:
        raise SystemExit(1)
    click.echo("ledger balanced; balances match entries; holds match open work; every accepted task paid once")


@main.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True)
@click.option(
    "--workers", "processes", default=gunicorn_conf.PROCESSES, show_default=True, type=int, help="gunicorn processes"
)
@click.option("--threads", default=gunicorn_conf.THREADS, show_default=True, type=int, help="per process (gthread)")
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="a JSON line per request on stderr (README, Performance: what a line costs)",
)
def serve(bind: str, processes: int, threads: int, access_log: bool) -> None:
    """Run the API under gunicorn with the deployments' settings (`marketplace/gunicorn_conf.py`);
    embedded PostgreSQL and Redis are started when DATABASE_URL / REDIS_URL are unset."""
    _migrated_database_url()
    env = _resolved_env()
    env["MARKETPLACE_ACCESS_LOG"] = "true" if access_log else "false"
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_fresh_metrics_dir()))
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        GUNICORN_CONFIG,
        "--bind",
        bind,
        "--workers",
        str(processes),
        "--threads",
        str(threads),
        "marketplace.wsgi:app",
    ]
    raise SystemExit(_run_child(command, env))


GUNICORN_CONFIG = "python:marketplace.gunicorn_conf"


def _fresh_metrics_dir() -> Path:
    """Where gunicorn's processes add up their metrics (`marketplace.metrics`); emptied on start,
    as prometheus_client asks, since the files of a previous server would be counted again."""
    folder = Path(str(_config()["DATA_DIR"])) / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _run_child(command: list[str], env: dict[str, str]) -> int:
    """Run a child, forwarding SIGTERM/SIGINT so it stops with us (and the embedded Redis)."""
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option(
    "--fork/--no-fork",
    default=True,
    show_default=True,
    help="each job in a child process (isolation), or all in this one (faster for many short jobs)",
)
def worker(burst: bool, fork: bool) -> None:
    """Run an RQ worker with its scheduler (background aggregation, expiry, sweeps)."""
    _migrated_database_url()
    env = _resolved_env()
    os.environ.update({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"]})
    run = import_string("workers.main:run")  # by name: marketplace never imports workers
    run(burst=burst, fork=fork)


@main.command()
@click.option("--items", default=2000, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", "crowd_size", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--spammers", default=3, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--golden", default=0.05, show_default=True, type=click.FloatRange(0.0, 0.9), help="share of golden items"
)
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(min=1), help="connections answering")
@click.option(
    "--seed", default=7, show_default=True, type=int, help="the same seed gives the same crowd, bans and accuracy"
)
@click.option("--labels", default=4, show_default=True, type=click.IntRange(2, 10), help="labels of the job")
@click.option(
    "--lowest-accuracy",
    default=0.55,
    show_default=True,
    type=click.FloatRange(0.0, 0.95),
    help="honest workers' accuracies run evenly from this to 0.95",
)
@click.option("--keep", is_flag=True, help="keep the temporary data folder (database, logs) instead of deleting it")
def demo(
    items: int,
    crowd_size: int,
    spammers: int,
    golden: float,
    concurrency: int,
    seed: int,
    labels: int,
    lowest_accuracy: float,
    keep: bool,
) -> None:
    """Run the whole loop on a simulated crowd through the real HTTP API, then report."""
    from marketplace.demo import DemoSettings, run_demo

    if spammers > crowd_size:
        raise click.BadParameter("more spammers than workers", param_hint="--spammers")
    settings = DemoSettings(
        items=items,
        workers=crowd_size,
        spammers=spammers,
        golden_share=golden,
        concurrency=concurrency,
        seed=seed,
        keep=keep,
        labels=labels,
        lowest_accuracy=lowest_accuracy,
    )
    run_demo(settings)


from marketplace.client.commands import register as _register_client_commands  # noqa: E402

_register_client_commands(main)  # `marketplace client ...` and `marketplace work`
