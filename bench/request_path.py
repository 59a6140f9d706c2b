"""What the request path costs: API CPU per lease+submit cycle, in-process on PostgreSQL.

    python -m bench.request_path --database-url postgresql://postgres@127.0.0.1:5432/test [--cycles 300]

Runs the same cycles three ways, interleaved, three times each: through the Flask app
(`HOT_PATH` off: flask-smorest, webargs, marshmallow), through the lease/submit middleware
(`marketplace/api/hot.py`), and as bare service calls (`pool.lease.lease_task`,
`pool.submit.submit`: no HTTP at all). Requests are WSGI calls with a prepared environ,
so no test client or server is counted. Prints CPU-ms per cycle of this process.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.hotpath import BUDGET_CENTS, LABELS, create_accounts, create_database, drop_database


def environ(path: str, body: dict[str, Any], key: str, idempotency_key: str | None = None) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(raw)),
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "HTTP_HOST": "bench",
    }
    if idempotency_key:
        env["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args()
    name, url = create_database(args.database_url)
    try:
        return run(url, args.cycles)
    finally:
        drop_database(args.database_url, name)


def run(url: str, cycles: int) -> int:
    from marketplace import create_app
    from marketplace.db import get_hot_engine
    from marketplace.migrate import upgrade
    from marketplace.models import utcnow
    from marketplace.pool import lease, submit

    upgrade(url)
    requester, keys = create_accounts(url, 20)
    app = create_app({"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/14", "TESTING": True})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {requester}"}
    annotation = {"type": "classification", "labels": LABELS}
    job = client.post(
        "/v1/jobs",
        json={"title": "path", "instructions": "x", "annotation": annotation, "budget_cents": BUDGET_CENTS},
        headers=headers,
    ).get_json()
    real = cycles * 3 * 12 + 2000
    items: list[dict[str, Any]] = [{"data": {"text": f"item {i}"}} for i in range(real)]
    items += [{"data": {"text": f"gold {i}"}, "answer": random.choice(LABELS)} for i in range(real // 9)]
    assert client.post(f"/v1/jobs/{job['id']}/items", json=items, headers=headers).status_code == 201
    assert client.post(f"/v1/jobs/{job['id']}/launch", headers=headers).status_code == 200
    ids = [client.get("/v1/me", headers={"Authorization": f"Bearer {k}"}).get_json()["id"] for k in keys]
    engine = get_hot_engine(app)

    def call(env: dict[str, Any]) -> tuple[str, bytes]:
        status: list[str] = []

        def start_response(line: str, _headers: Any, *_: Any) -> Any:
            status.append(line)

        out = b"".join(app.wsgi_app(env, start_response))
        return status[0], out

    def http_cycle(index: int) -> None:
        key = keys[index % len(keys)]
        _, out = call(environ("/v1/assignments", {"job_id": job["id"]}, key))
        task = json.loads(out)
        answers = [{"item_id": item["id"], "label": random.choice(LABELS)} for item in task["items"]]
        status, out = call(environ(f"/v1/assignments/{task['id']}/submit", {"answers": answers}, key, uuid.uuid4().hex))
        assert status.startswith("200"), out

    def service_cycle(index: int) -> None:
        worker = ids[index % len(ids)]
        with app.app_context():
            task = lease.lease_task(engine, worker, job["id"])
            assert task is not None
            answers = [{"item_id": item["id"], "label": random.choice(LABELS)} for item in task.items]
            submit.submit(engine, worker, task.id, answers, uuid.uuid4().hex, utcnow())

    ways: list[tuple[str, Callable[[int], None], bool]] = [
        ("Flask app (HOT_PATH off)", http_cycle, False),
        ("middleware (api/hot.py)", http_cycle, True),
        ("service calls only", service_cycle, True),
    ]
    figures: dict[str, list[float]] = {}
    for label, cycle, hot in ways * 3:
        app.config["HOT_PATH"] = hot
        for index in range(30):  # warm: prepared statements, the auth cache, the golden pool
            cycle(index)
        started = time.process_time()
        for index in range(cycles):
            cycle(index)
        figures.setdefault(label, []).append((time.process_time() - started) / cycles * 1000)
    for label, values in figures.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{label:28s} {sorted(values)[1]:5.2f} CPU-ms/cycle (median; runs {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
