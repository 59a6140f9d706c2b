"""`marketplace serve` as deployed: gunicorn's one configuration (keep-alive), metrics summed
over several processes, JSON logs that never hold a key, a golden answer or a body."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import httpx
from redis import Redis

from marketplace import gunicorn_conf
from tests.serving import cli, create_key, environment, serve

GOLDEN = "zebra-golden-4f1c"  # a label only golden answers and worker bodies carry
ITEM_MARK = "item-body-9d2e"  # in every item's data: request bodies only


def _get(sock: socket.socket, path: str) -> bytes:
    """One request on an open connection; the whole response (b"" when the server closed it)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *([0-9]+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_serve_loads_the_deployments_gunicorn_settings_and_keeps_idle_connections(
    database_url: str, redis: Redis, tmp_path: Path
) -> None:
    assert 65 <= gunicorn_conf.keepalive <= 75
    env = environment(database_url, tmp_path / "var")
    with (
        serve(env, tmp_path / "serve.log", "--workers", "1") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        first = _get(sock, "/healthz")
        assert first.startswith(b"HTTP/1.1 200"), first
        time.sleep(3)  # past gunicorn's default keep-alive (2 s), which closed this connection
        second = _get(sock, "/healthz")
        assert second.startswith(b"HTTP/1.1 200"), second
    assert '"event": "Using worker: gthread"' in (tmp_path / "serve.log").read_text()  # JSON, as configured


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_a_full_run_is_measured_across_processes_and_logs_no_secret(
    database_url: str, redis: Redis, tmp_path: Path
) -> None:
    env = environment(database_url, tmp_path / "var")
    operator = create_key(env, "operator", "ops")
    log = tmp_path / "serve.log"
    keys = [operator]
    with serve(env, log, "--workers", "2", "--threads", "4") as server:
        base = server.base
        op = {"Authorization": f"Bearer {operator}"}

        def account(role: str) -> str:
            made = httpx.post(f"{base}/v1/accounts", json={"role": role, "name": role}, headers=op)
            assert made.status_code == 201
            keys.append(made.json()["key"])
            return str(made.json()["key"])

        req = {"Authorization": f"Bearer {account('requester')}"}
        workers = [{"Authorization": f"Bearer {account('worker')}"} for _ in range(3)]
        job = httpx.post(
            f"{base}/v1/jobs",
            headers=req,
            json={
                "title": "t",
                "instructions": "i",
                "annotation": {"type": "classification", "labels": ["cat", GOLDEN]},
                "overlap": 3,
                "golden_ratio": 0.2,
                "items_per_task": 5,
                "reward_cents": 1,
                "budget_cents": 1000,
            },
        ).json()
        items = [{"data": {"url": f"{ITEM_MARK}-{i}"}} for i in range(8)]
        items += [{"data": {"url": f"{ITEM_MARK}-g{i}"}, "answer": GOLDEN} for i in range(2)]
        assert httpx.post(f"{base}/v1/jobs/{job['id']}/items", json=items, headers=req).status_code == 201
        requester_id = httpx.get(f"{base}/v1/me", headers=req).json()["id"]
        funded = httpx.post(
            f"{base}/v1/accounts/{requester_id}/funds", json={"amount_cents": 1000, "currency": "USD"}, headers=op
        )
        assert funded.status_code == 201
        assert httpx.post(f"{base}/v1/jobs/{job['id']}/launch", headers=req).status_code == 200

        leases = empty = submits = answers = 0
        for _ in range(6):  # every request on a new connection: both processes serve some
            for worker in workers:
                lease = httpx.post(f"{base}/v1/assignments", json={"job_id": job["id"]}, headers=worker)
                assert lease.headers["X-Request-Id"]
                if lease.status_code == 204:
                    empty += 1
                    continue
                leases += 1
                task = lease.json()
                if leases == 1:  # the pool as a scrape sees it with one task out
                    pool = httpx.get(f"{base}/metrics").text
                    assert _metric(pool, f'marketplace_open_leases{{job_id="{job["id"]}"}}') == 1
                    assert 0 < _metric(pool, f'marketplace_pool_free_slots{{job_id="{job["id"]}"}}') < 8 * 3
                body = {"answers": [{"item_id": i["id"], "label": GOLDEN} for i in task["items"]]}
                done = httpx.post(f"{base}/v1/assignments/{task['id']}/submit", json=body, headers=worker)
                assert done.status_code == 200, done.text
                submits += 1
                answers += len(task["items"])
        assert leases and empty  # overlap 3 x 10 items for 3 workers: some find nothing left

        echoed = httpx.get(f"{base}/healthz", headers={"X-Request-Id": "trace-abc.1"})
        assert echoed.headers["X-Request-Id"] == "trace-abc.1"
        assert httpx.get(f"{base}/readyz").json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
        assert httpx.get(f"{base}/v1/me", headers={"Authorization": "Bearer mk_not-a-key"}).status_code == 401

        for _ in range(6):  # whichever process answers, the sum of both
            scraped = httpx.get(f"{base}/metrics")
            assert scraped.status_code == 200
            text = scraped.text
            assert _metric(text, "marketplace_leases_total") == leases
            assert _metric(text, "marketplace_leases_empty_total") == empty
            assert _metric(text, "marketplace_submits_total") == submits
            assert _metric(text, "marketplace_answers_total") == answers
        submit_route = 'route="/v1/assignments/<id:assignment_id>/submit",status="200"'
        assert _metric(text, f'marketplace_http_requests_total{{method="POST",{submit_route}}}') == submits
        assert _metric(text, 'marketplace_queue_jobs{queue="marketplace",state="queued"}') >= 1  # aggregation
    worker = cli(env, "worker", "--burst")
    assert worker.returncode == 0, worker.stderr[-3000:]

    logs = log.read_text() + worker.stdout + worker.stderr
    lines = [line for line in logs.splitlines() if line.strip()]
    requests = [json.loads(line) for line in lines if '"event": "request"' in line]
    assert len(requests) >= leases + empty + submits
    assert {r["route"] for r in requests} >= {"/v1/assignments", "/v1/assignments/<id:assignment_id>/submit"}
    assert all(r["request_id"] for r in requests)
    assert any('"aggregated' in line for line in lines)  # the worker's lines are in the run
    for secret in [*keys, GOLDEN, ITEM_MARK, "mk_not-a-key"]:
        assert secret not in logs, f"{secret[:8]}... appears in the logs"
