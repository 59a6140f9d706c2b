"""`marketplace serve` as a subprocess on PostgreSQL and the tests' Redis, for tests that need
the real server: gunicorn's settings, several processes, its logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import REDIS_URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKETPLACE_", "PROMETHEUS_"))}
    env.update(DATABASE_URL=database_url, REDIS_URL=REDIS_URL, MARKETPLACE_DATA_DIR=str(data_dir), **extra)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketplace", *args], env=env, capture_output=True, text=True, timeout=180
    )


def create_key(env: dict[str, str], role: str, name: str) -> str:
    created = cli(env, "accounts", "create", "--role", role, "--name", name)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


@dataclass
class Server:
    base: str
    port: int
    log: Path  # the server's stdout and stderr


@contextmanager
def serve(env: dict[str, str], log: Path, *args: str) -> Iterator[Server]:
    """`marketplace serve` on a free loopback port until the block ends (then SIGINT)."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "marketplace", "serve", "--bind", f"127.0.0.1:{port}", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("serve did not answer /healthz in 30 s")
        yield Server(base, port, log)
    finally:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: no wait for idle keep-alive clients
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
