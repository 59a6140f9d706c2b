"""`marketplace work`: a worker's terminal client for classification and text tasks, so a
worker without a browser can still earn. Labels are chosen by number keys (one keypress in a
terminal; a line each when input is piped); multi-label items take several numbers on a line.

Only the public API: lease, show the job's title and instructions, what the task pays when
the lease says, the time left and each item (its text, or its image's address), then submit
with an Idempotency-Key. A 204 waits with backoff; a 403 ends with the server's reason.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from marketplace.client import ApiError, Client, ClientError, Forbidden, Task, Unauthorized
from marketplace.client.worker import NO_WORK_BACKOFF

TERMINAL_TYPES = ("classification", "multilabel")
SHOWN_CHARACTERS = 2000


class Quit(Exception):
    """The worker asked to stop (q, Ctrl-D, end of input)."""


class SkipTask(Exception):
    """The worker asked to give this task back (s)."""


class Keys:
    """What the worker types: one keypress on a terminal, a line when input is piped."""

    def __init__(self) -> None:
        self.interactive = sys.stdin.isatty()

    def read(self, multiple: bool) -> str:
        if self.interactive and not multiple:
            try:
                key = click.getchar()
            except (EOFError, KeyboardInterrupt):
                raise Quit from None
            click.echo(key)
            return key
        line = sys.stdin.readline()
        if not line:
            raise Quit
        return line.strip()


@click.command("work")
@click.option("--url", envvar="MARKETPLACE_URL", default="http://127.0.0.1:8000", show_default=True)
@click.option("--key", envvar="MARKETPLACE_KEY", help="your worker key (default: $MARKETPLACE_KEY, or asked)")
@click.option("--job", "job_id", type=int, help="only this job's tasks")
@click.option("--exit-when-idle", is_flag=True, help="stop at the first 'no work now' instead of waiting")
def work(url: str, key: str | None, job_id: int | None, exit_when_idle: bool) -> None:
    """Take tasks in the terminal: classification and text tasks, labels by number keys."""
    if not key:
        key = click.prompt("Worker key", hide_input=True, err=True)
    with Client(url, key or "") as client:
        try:
            me = client.me()
        except Unauthorized:
            raise click.ClickException("that key is not known to the server") from None
        except ClientError as error:
            raise click.ClickException(str(error)) from None
        if me["role"] != "worker":
            raise click.ClickException(f"that key belongs to a {me['role']}, not a worker")
        click.echo(f"Signed in as {me['name']}. Earned so far, not yet paid: {_money(me.get('balance_cents', 0), me)}.")
        click.echo("Keys: a label's number; s skips the task; q quits.")
        try:
            _loop(client, Keys(), job_id, exit_when_idle)
        except Quit:
            click.echo("Bye.")
        except Forbidden as error:
            raise click.ClickException(f"this account cannot take work: {error.message}") from None
        except ClientError as error:
            raise click.ClickException(str(error)) from None
        summary = client.me()
        click.echo(f"Earned, not yet paid: {_money(summary.get('balance_cents', 0), summary)}.")


def _loop(client: Client, keys: Keys, job_id: int | None, exit_when_idle: bool) -> None:
    delay = NO_WORK_BACKOFF[0]
    shown_jobs: set[int] = set()
    while True:
        task = client.lease(job_id)
        if task is None:
            if exit_when_idle:
                click.echo("No work now.")
                return
            click.echo(f"No work now; checking again in {delay:.0f} s (Ctrl-C to stop).")
            time.sleep(delay)
            delay = min(NO_WORK_BACKOFF[1], delay * 2)
            continue
        delay = NO_WORK_BACKOFF[0]
        try:
            _do(task, keys, shown_jobs)
        except (Quit, KeyboardInterrupt):
            task.skip()
            raise Quit from None
        except SkipTask:
            task.skip()
            click.echo("Task given back.")


def _do(task: Task, keys: Keys, shown_jobs: set[int]) -> None:
    job = task.job
    kind = job.get("annotation", {}).get("type", "classification")
    click.echo("")
    click.secho(f"== {job.get('title', 'Task')} ==", bold=True)
    if job["id"] not in shown_jobs:
        click.echo(job.get("instructions", "")[:SHOWN_CHARACTERS])
        shown_jobs.add(job["id"])
    if kind not in TERMINAL_TYPES:
        click.echo(f"This task is a {kind} task: it needs the worker page (/worker/). Giving it back.")
        raise SkipTask
    pays = pay_text(task.raw)
    click.echo(f"Task {task.id}: {len(task.items)} items{f', pays {pays}' if pays else ''}.")
    answers: list[dict[str, Any]] = []
    for number, item in enumerate(task.items, start=1):
        click.echo(f"\n[{number}/{len(task.items)}] time left {_clock(task.seconds_left())}")
        for line in item_lines(item.get("data", {})):
            click.echo(f"  {line}")
        answers.append({"item_id": item["id"], **_ask(task.labels, kind, keys)})
        if task.seconds_left() <= 0:
            click.echo("The lease ran out: these answers were not sent.")
            return
    try:
        task.submit(answers)
    except ApiError as error:
        click.echo(f"Not accepted ({error.status}): {error.message}")
        if error.errors:
            click.echo(f"  {error.errors}")
        if task.state == "leased":
            raise SkipTask from None
        return
    click.echo(f"Submitted {len(answers)} answers.")


def _ask(labels: list[str], kind: str, keys: Keys) -> dict[str, Any]:
    """One label (classification) or a set of them (multilabel) by number."""
    multiple = kind == "multilabel"
    menu = "  ".join(f"{n}) {label}" for n, label in enumerate(labels, start=1))
    hint = "numbers separated by spaces, or - for none" if multiple else "a number"
    while True:
        click.echo(f"{menu}   [{hint}; s skip task; q quit]")
        typed = keys.read(multiple or len(labels) > 9)
        if typed.lower() == "q":
            raise Quit
        if typed.lower() == "s":
            raise SkipTask
        chosen = _numbers(typed, len(labels), multiple)
        if chosen is not None:
            picked = [labels[n - 1] for n in chosen]
            return {"labels": picked} if multiple else {"label": picked[0]}
        click.echo(f"{typed!r} is not {hint} between 1 and {len(labels)}.")


def _numbers(typed: str, count: int, multiple: bool) -> list[int] | None:
    if multiple and typed == "-":
        return []
    parts = typed.replace(",", " ").split()
    if not parts or not all(p.isdigit() and 1 <= int(p) <= count for p in parts):
        return None
    if not multiple and len(parts) != 1:
        return None
    return sorted({int(p) for p in parts})


def item_lines(data: dict[str, Any]) -> list[str]:
    """An item as text: its `text` first, an image's address, then the other plain fields."""
    lines = []
    if isinstance(data.get("text"), str):
        lines.append(data["text"][:SHOWN_CHARACTERS])
    if isinstance(data.get("image_url"), str):
        lines.append(f"image: {data['image_url']}")
    for name, value in data.items():
        if name not in ("text", "image_url") and isinstance(value, str | int | float | bool):
            lines.append(f"{name}: {str(value)[:200]}")
    return lines or ["(no text)"]


def pay_text(task: dict[str, Any]) -> str:
    """What the lease says the task pays, when it says (`pay: {...}` or `*_cents` fields)."""
    pay = task.get("pay")
    source: dict[str, Any] = pay if isinstance(pay, dict) else task
    parts = [
        f"{name.removesuffix('_cents').replace('_', ' ')} {_money(value, source)}"
        for name, value in source.items()
        if name.endswith("_cents") and isinstance(value, int) and name != "paid_cents"
    ]
    return ", ".join(parts)


def _money(cents: int, context: dict[str, Any]) -> str:
    currency = context.get("currency", "USD")
    return f"{cents / 100:.2f} {currency}"


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
