"""`marketplace`: the operators' command line (serve, worker, db upgrade, accounts, demo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click
from werkzeug.utils import import_string

from marketplace.config import load

# One process per two cores, 8 threads each: threads keep the cores busy while requests wait
# on PostgreSQL, and fewer processes mean fewer statements contending in PostgreSQL at once.
# On the 2-core bench machine, 1 x 8 took ~20% less server CPU per lease+submit than 2 x 4 at
# the same rate, and 2 x 4 ~40% more cycles/s than 2 sync workers (README, Performance).
# Threads must not exceed the engine's pool (`db.make_engine`: 10), or connections churn.
SERVE_PROCESSES = max(1, (os.cpu_count() or 2) // 2)
SERVE_THREADS = 8


def _config() -> dict[str, object]:
    return load()


@click.group()
def main() -> None:
    """Crowdsourcing marketplace: configuration comes from DATABASE_URL and REDIS_URL."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or migrate the schema (alembic)."""
    from marketplace.migrate import upgrade

    url = str(_config()["DATABASE_URL"])
    upgrade(url, revision)
    click.echo(f"schema at {revision}")


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

    engine = make_engine(str(_config()["DATABASE_URL"]))
    with session_scope(engine) as session:
        account, key = create_account(session, role, name)
        click.echo(f"created {role} {account.id} ({name}); keep this key, it is not shown again:")
    engine.dispose()
    click.echo(key)


def _resolved_env() -> dict[str, str]:
    """The environment for child processes, with the embedded Redis started if needed."""
    from marketplace.queue import redis_url

    config = _config()
    env = dict(os.environ)
    env["DATABASE_URL"] = str(config["DATABASE_URL"])
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
    engine = make_engine(str(config["DATABASE_URL"]))
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
    from marketplace.services import ledger

    engine = make_engine(str(_config()["DATABASE_URL"]))
    with session_scope(engine) as session:
        problems = ledger.check(session)
    engine.dispose()
    for problem in problems:
        click.echo(problem)
    if problems:
        raise SystemExit(1)
    click.echo("ledger balanced; balances match entries; holds match open work; every accepted task paid once")


@main.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True)
@click.option("--workers", "processes", default=SERVE_PROCESSES, show_default=True, type=int, help="gunicorn processes")
@click.option("--threads", default=SERVE_THREADS, show_default=True, type=int, help="per process (gthread)")
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="a line per request on stdout (costs gunicorn ~0.15 CPU-ms a request: README, Performance)",
)
def serve(bind: str, processes: int, threads: int, access_log: bool) -> None:
    """Run the API under gunicorn (an embedded Redis is started when REDIS_URL is unset)."""
    env = _resolved_env()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        str(processes),
        "--threads",
        str(threads),
        *(["--access-logfile", "-"] if access_log else []),
        "marketplace.wsgi:app",
    ]
    raise SystemExit(_run_child(command, env))


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
def worker(burst: bool) -> None:
    """Run an RQ worker with its scheduler (background aggregation, expiry, sweeps)."""
    env = _resolved_env()
    os.environ.update({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"]})
    run = import_string("workers.main:run")  # by name: marketplace never imports workers
    run(burst=burst)


@main.command()
@click.option("--items", default=2000, show_default=True, type=int)
@click.option("--workers", "crowd_size", default=30, show_default=True, type=int)
@click.option("--spammers", default=3, show_default=True, type=int)
@click.option("--golden", default=0.05, show_default=True, type=float, help="share of golden items")
@click.option("--concurrency", default=16, show_default=True, type=int)
@click.option("--seed", default=7, show_default=True, type=int)
def demo(items: int, crowd_size: int, spammers: int, golden: float, concurrency: int, seed: int) -> None:
    """Run the whole loop on a simulated crowd through the real HTTP API, then report."""
    from marketplace.demo import DemoSettings, run_demo

    run_demo(
        DemoSettings(
            items=items, workers=crowd_size, spammers=spammers, golden_share=golden, concurrency=concurrency, seed=seed
        )
    )


from marketplace.client.commands import register as _register_client_commands  # noqa: E402

_register_client_commands(main)  # `marketplace client ...` and `marketplace work`
