"""The README's API section is what the API does: its walk-through's requests, run as written on
a fresh database, get the answers it shows, and its table links every call to the schemas the
OpenAPI document gives that call (and lists every call there is). PostgreSQL."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis

from marketplace.db import dispose, get_engine, session_scope
from marketplace.services import acceptance, ledger
from marketplace.services.accounts import create_account
from marketplace.services.aggregating import aggregate_job
from tests.conftest import make_app

README = (Path(__file__).parent.parent / "README.md").read_text()
WALK = README[README.index("### A first job, step by step") : README.index("### Every call")]
TABLE = README[README.index("### Every call") : README.index("## How it works")]
SCHEMA_LINK = re.compile(r"\(http://127\.0\.0\.1:8000/openapi\.json#/components/schemas/(\w+)\)")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?$")
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


@dataclass
class Step:
    command: str
    shown: tuple[str, str] | None  # (language, text) of the answer shown after it


def _blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S)]


def walk_steps() -> list[Step]:
    blocks = _blocks(WALK)
    steps = []
    for index, (language, text) in enumerate(blocks):
        if language == "sh" and text.lstrip().startswith("curl"):
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            shown = following if following and following[0] in ("json", "csv", "jsonl") else None
            steps.append(Step(text, shown))
    return steps


def parse_curl(command: str, variables: dict[str, str]) -> tuple[str, str, dict[str, str], str | None]:
    """(method, path, headers, body) of a curl command as the README writes them."""
    for name, value in variables.items():
        command = command.replace(f"${name}", value)
    tokens = shlex.split(command)
    assert tokens[0] == "curl"
    method, url, headers, body = "GET", None, {}, None
    tokens = tokens[1:]
    while tokens:
        token = tokens.pop(0)
        if token == "-s":
            continue
        if token == "-X":
            method = tokens.pop(0)
        elif token == "-H":
            name, _, value = tokens.pop(0).partition(":")
            headers[name.strip()] = value.strip()
        elif token == "-d":
            body = tokens.pop(0)
        else:
            assert url is None, f"unexpected curl argument {token!r}"
            url = token
    assert url is not None
    return method, url, headers, body


def normalised(value: Any) -> Any:
    """Times differ from run to run; so does how long an aggregation took."""
    if isinstance(value, dict):
        return {k: "<seconds>" if k == "seconds" else normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if isinstance(value, str) and TIME.match(value):
        return "<time>"
    return value


@pytest.fixture(name="app")
def readme_app(database_url: str, redis: Redis) -> Iterator[Flask]:
    """The app the README's walk-throughs ran on (this one and the box walk's)."""
    application = make_app(database_url, POOL_SEED=2026)  # the walk's draws and shuffle, as printed
    yield application
    dispose(application)


def test_the_walk_through_gets_the_answers_it_shows(app: Flask) -> None:
    with session_scope(get_engine(app)) as session:
        requester, requester_key = create_account(session, "requester", "Acme Labs")
        worker, worker_key = create_account(session, "worker", "Ada")
        assert (requester.id, worker.id) == (1, 2)  # as `accounts create` printed them in the README
        ledger.fund(session, 1, 1000, "USD", actor_id=0, key=None)
    variables = {"BASE": "", "REQUESTER_KEY": requester_key, "WORKER_KEY": worker_key}
    client = app.test_client()
    steps = walk_steps()
    assert len(steps) >= 8 and sum(step.shown is not None for step in steps) >= 7
    for step in steps:
        method, path, headers, body = parse_curl(step.command, variables)
        if method == "GET" and path.startswith("/v1/jobs/1"):
            with session_scope(get_engine(app)) as session:  # what the RQ worker does after a submit
                aggregate_job(session, 1)
            with session_scope(get_engine(app)) as session:
                acceptance.decide_job(session, 1, acceptance.Limits.from_config(app.config))
        response = client.open(path, method=method, headers=headers, data=body)
        assert response.status_code < 300, (step.command, response.get_data(as_text=True))
        if step.shown is None:
            continue
        language, text = step.shown
        actual = response.get_data(as_text=True)
        if language == "json":
            got, want = normalised(json.loads(actual)), normalised(json.loads(text))
            assert got == want, f"{method} {path} answers:\n{json.dumps(json.loads(actual), indent=2)}"
        elif language == "jsonl":
            got = [normalised(json.loads(line)) for line in actual.splitlines()]
            assert got == [normalised(json.loads(line)) for line in text.splitlines()], f"{path}:\n{actual}"
        else:
            assert actual.replace("\r\n", "\n") == text, f"{path}:\n{actual}"


def _row_calls(cell: str) -> list[tuple[str, str]]:
    """(method, path) of each call in a table cell, `{...}` as `{}`; `/pause` after
    `POST /v1/jobs/{id}/launch` is `POST /v1/jobs/{}/pause`."""
    calls: list[tuple[str, str]] = []
    for code in re.findall(r"`([^`]+)`", cell):
        code = code.replace("\\|", "|")
        if code.split(" ")[0] in METHODS:
            method, path = code.split(" ", 1)
        else:
            method, path = calls[-1][0], calls[-1][1].rsplit("/", 1)[0] + code
        calls.append((method, re.sub(r"\{[^}]*\}", "{}", path.split("?")[0])))
    return calls


def _operation_schemas(operation: dict[str, Any]) -> set[str]:
    """The component schemas an operation's JSON body and successful answers are."""
    names: set[str] = set()
    parts = [operation.get("requestBody", {})]
    parts += [answer for status, answer in operation.get("responses", {}).items() if status.startswith("2")]
    for part in parts:
        found = re.findall(r"#/components/schemas/(\w+)", json.dumps(part.get("content", {}).get("application/json")))
        names.update(found)
    return names


def test_the_api_table_links_every_call_to_its_schemas(app: Flask) -> None:
    spec = app.test_client().get("/openapi.json").get_json()
    operations = {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path)): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method.upper() in METHODS
    }
    listed: set[tuple[str, str]] = set()
    rows = [line for line in TABLE.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) >= 25
    for row in rows:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        calls, links = _row_calls(cells[1]), set(SCHEMA_LINK.findall(cells[2]))
        for name in links:
            assert name in spec["components"]["schemas"], (row, name)
        for call in calls:
            assert call in operations, (row, call)
            missing = _operation_schemas(operations[call]) - links
            assert not missing, (call, "the row does not link", missing)
            listed.add(call)
    assert set(operations) - listed == set(), "calls the table does not list"
    for name in SCHEMA_LINK.findall(WALK):
        assert name in spec["components"]["schemas"], name
