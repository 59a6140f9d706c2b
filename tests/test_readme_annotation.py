"""The README's box job walk-through is what the API does: its requests, run as written on a fresh
database, get the answers it shows (a refusal shows its status in `code`). PostgreSQL."""

from __future__ import annotations

import io
import json
import re
import zipfile

from flask import Flask

from marketplace.db import get_engine, session_scope
from marketplace.services import acceptance, ledger
from marketplace.services.accounts import create_account
from marketplace.services.aggregating import aggregate_job
from marketplace.services.rules import apply_rules
from tests.test_readme import (  # noqa: F401 - readme_app: the `app` fixture, seeded as printed
    README,
    _blocks,
    normalised,
    parse_curl,
    readme_app,
)

_START = README.index("## Image annotation\n")
SECTION = README[_START : README.index("\n## ", _START)]  # to the next section


def steps() -> list[tuple[str, tuple[str, str] | None]]:
    """(one curl command, the answer shown after its block if it is the block's last command)."""
    blocks = _blocks(SECTION)
    found: list[tuple[str, tuple[str, str] | None]] = []
    for index, (language, text) in enumerate(blocks):
        if language != "sh":
            continue
        commands = ["curl" + part for part in re.split(r"^curl", text, flags=re.M) if part.strip()]
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        shown = following if following and following[0] == "json" else None
        found += [(command, shown if n == len(commands) - 1 else None) for n, command in enumerate(commands)]
    return found


def test_the_box_walk_through_gets_the_answers_it_shows(app: Flask) -> None:
    with session_scope(get_engine(app)) as session:
        _, requester_key = create_account(session, "requester", "Acme Labs")
        _, worker_key = create_account(session, "worker", "Ada")
        ledger.fund(session, 1, 1000, "USD", actor_id=0, key=None)
    variables = {"BASE": "", "REQUESTER_KEY": requester_key, "WORKER_KEY": worker_key, "JOB": "1", "TASK": "1"}
    client = app.test_client()
    walk = steps()
    assert len(walk) >= 10 and sum(shown is not None for _, shown in walk) >= 8
    for command, shown in walk:
        command = re.sub(r"-o \S+ ", "", command)  # saved to a file: the test reads the answer
        method, path, headers, body = parse_curl(command, variables)
        if method == "GET":  # what the RQ worker does after the submits
            with session_scope(get_engine(app)) as session:
                apply_rules(session, 1)
            with session_scope(get_engine(app)) as session:
                aggregate_job(session, 1)
            with session_scope(get_engine(app)) as session:
                acceptance.decide_job(session, 1, acceptance.Limits.from_config(app.config))
        response = client.open(path, method=method, headers=headers, data=body)
        if response.mimetype == "application/zip":  # saved with -o: what the README says it holds
            archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
            for name in archive.namelist():
                assert f"`{name}`" in SECTION or name.startswith(("labels/street-00", "Annotations/street-00"))
                if name == "labels/street-001.txt":  # the line the README quotes
                    assert any(f"`{line}`" in SECTION for line in archive.read(name).decode().splitlines())
            continue
        actual = response.get_data(as_text=True)
        want = json.loads(shown[1]) if shown else None
        status = want["code"] if isinstance(want, dict) and "code" in want else None
        if status is None:
            assert response.status_code < 300, (command, actual)
        else:
            assert response.status_code == status, (command, actual)
        if want is not None:
            got = normalised(json.loads(actual))
            assert got == normalised(want), f"{method} {path} answers:\n{json.dumps(json.loads(actual), indent=2)}"
