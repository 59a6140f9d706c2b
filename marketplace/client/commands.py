"""`marketplace client ...`: a requester's command line over the Python client (and so over the
public API only): create a job from a JSON file, add items from a file with a progress bar,
launch, watch progress, download results in any export format.

The URL and key come from `--url`/`--key` or `MARKETPLACE_URL`/`MARKETPLACE_KEY` (better: a
key on the command line shows in the process list).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from marketplace.client import ApiError, Client, ClientError, UploadError, WaitTimeout
from marketplace.client.terminal_worker import work

DEFAULT_URL = "http://127.0.0.1:8000"


def register(main: click.Group) -> None:
    """Add `client` and `work` to the `marketplace` command."""
    main.add_command(client_group)
    main.add_command(work)


@contextmanager
def reported() -> Iterator[None]:
    """A client error as a one-line message (and the server's field errors), exit status 1."""
    try:
        yield
    except UploadError as error:
        raise click.ClickException(f"{error}\n(add --start {error.start} to resume)") from None
    except ApiError as error:
        details = f"\n{json.dumps(error.errors, indent=2)}" if error.errors else ""
        raise click.ClickException(f"{error.status}: {error.message}{details}") from None
    except (ClientError, OSError) as error:
        raise click.ClickException(str(error)) from None


def _client(context: click.Context) -> Client:
    """The client of the group's `--url` and `--key` (asked for, unechoed, when neither gave one)."""
    settings = context.find_root().meta
    if "client" not in settings:
        key = settings["key"] or click.prompt("Requester key", hide_input=True, err=True)
        settings["client"] = context.find_root().with_resource(Client(settings["url"], key))
    return settings["client"]  # type: ignore[no-any-return]


@click.group("client")
@click.option("--url", envvar="MARKETPLACE_URL", default=DEFAULT_URL, show_default=True, help="the API's address")
@click.option("--key", envvar="MARKETPLACE_KEY", help="your requester key (default: $MARKETPLACE_KEY)")
@click.pass_context
def client_group(context: click.Context, url: str, key: str | None) -> None:
    """A requester's jobs over the HTTP API (set MARKETPLACE_URL and MARKETPLACE_KEY)."""
    context.find_root().meta.update(url=url, key=key)


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@client_group.command("create-job")
@click.argument("spec", type=click.File("r"))
@click.pass_context
def create_job(context: click.Context, spec: Any) -> None:
    """Create a draft job from a JSON file (the body of POST /v1/jobs); prints its id last."""
    try:
        body = json.load(spec)
    except ValueError as error:
        raise click.BadParameter(f"not valid JSON: {error}", param_hint="SPEC") from None
    with reported():
        job = _client(context).create_job(body)
    click.echo(f"created job {job['id']} ({job['title']!r}, {job['state']})", err=True)
    click.echo(job["id"])


@client_group.command("add-items")
@click.argument("job_id", type=int)
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--start", default=0, show_default=True, type=click.IntRange(min=0), help="resume at this item")
@click.option("--progress/--no-progress", default=None, help="a progress bar (default: when stderr is a terminal)")
@click.pass_context
def add_items(
    context: click.Context, job_id: int, source: Path, batch_size: int, start: int, progress: bool | None
) -> None:
    """Upload items from a .jsonl, .json or .csv file in batches (see the README, Clients)."""
    with reported():
        upload = _client(context).add_items(job_id, source, batch_size=batch_size, start=start, progress=progress)
    click.echo(f"added {upload.added} items ({upload.golden} golden) to job {job_id}")


def _state_command(action: str) -> None:
    @client_group.command(action, help=f"{action.capitalize()} a job.")
    @click.argument("job_id", type=int)
    @click.pass_context
    def command(context: click.Context, job_id: int) -> None:
        with reported():
            job = getattr(_client(context), action)(job_id)
        click.echo(f"job {job_id} is {job['state']}")


for _action in ("launch", "pause", "cancel"):
    _state_command(_action)


@client_group.command("status")
@click.argument("job_id", type=int)
@click.pass_context
def status(context: click.Context, job_id: int) -> None:
    """The job's state, progress and quality summary, as JSON."""
    with reported():
        job = _client(context).job(job_id)
    _print({key: job.get(key) for key in ("id", "title", "state", "progress", "quality")})


@client_group.command("watch")
@click.argument("job_id", type=int)
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1), help="seconds")
@click.option("--timeout", type=click.FloatRange(min=0), help="give up after this many seconds (exit 2)")
@click.option("--aggregated/--not-aggregated", default=True, help="also wait for the final aggregation (default)")
@click.option("--progress/--no-progress", default=None, help="a progress bar (default: when stderr is a terminal)")
@click.pass_context
def watch(
    context: click.Context, job_id: int, interval: float, timeout: float | None, aggregated: bool, progress: bool | None
) -> None:
    """Wait for a job with a bar of answers collected of wanted and an ETA; ends when it is done."""
    with reported():
        try:
            job = _client(context).wait(
                job_id, poll_seconds=interval, timeout=timeout, aggregated=aggregated, progress=progress
            )
        except WaitTimeout as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(2)
    click.echo(f"job {job_id} is {job['state']}: {job['progress']['answers']} answers")


@client_group.command("results")
@click.argument("job_id", type=int)
@click.option("--format", "format_", default="csv", show_default=True, help="csv, jsonl, json or another export")
@click.option("--masks", help="coco of a polygon job: polygons (default) or rle")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="default: job-ID-results.FORMAT")
@click.pass_context
def results(context: click.Context, job_id: int, format_: str, masks: str | None, output: Path | None) -> None:
    """Download the job's results (one row per real item) into a file."""
    destination = output or Path(f"job-{job_id}-results.{format_}")
    with reported():
        written = _client(context).export(job_id, format_, destination, masks)
    click.echo(f"wrote {written}")
