"""How upload and launch scale with a job's size: both must be linear in items.

    python -m bench.launch --database-url postgresql://postgres@127.0.0.1:5432/test [--items 5000 20000 100000 1000000]

For each size, on a fresh database: a job is created through the API (the app in this process,
no HTTP server), its items uploaded in batches of 50,000 (the API's limit per request) with 5%
golden, then launched (every real item's rounds enter the pool and the budget is held). Prints
seconds for the upload and the launch, and microseconds per item, one JSON line per size. A
linear path keeps the per-item figures flat as the size grows; the audit measured launch at
4.6 s for 5,000 items, 56.5 s for 20,000 and 155 s for 50,000 (quadratic).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

BATCH = 50_000


def _admin_url(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def run(admin_url: str, items: int, overlap: int) -> dict[str, Any]:
    from marketplace import create_app
    from marketplace.db import dispose, get_engine, session_scope
    from marketplace.migrate import upgrade
    from marketplace.services import ledger
    from marketplace.services.accounts import create_account

    name = f"bench_launch_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _admin_url(admin_url, name)
    try:
        upgrade(url)
        app = create_app({"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/5", "RATE_LIMITS": False})
        with session_scope(get_engine(app)) as session:
            requester, key = create_account(session, "requester", "bench")
            ledger.fund(session, int(requester.id or 0), 10**11, "USD", actor_id=0, key=None)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        spec = {
            "title": "launch",
            "instructions": "x",
            "annotation": {"type": "classification", "labels": ["a", "b"]},
            "overlap": overlap,
            "reward_cents": 1,
            "budget_cents": 10**10,
        }
        job = client.post("/v1/jobs", json=spec, headers=headers).get_json()
        started = time.perf_counter()
        for start in range(0, items, BATCH):
            batch = [
                {
                    "key": f"i{n}",
                    "data": {"url": f"https://example.com/{n}.jpg"},
                    **({"answer": "a"} if n % 20 == 0 else {}),
                }
                for n in range(start, min(items, start + BATCH))
            ]
            response = client.post(f"/v1/jobs/{job['id']}/items", json=batch, headers=headers)
            assert response.status_code == 201, response.get_data(as_text=True)[:300]
        upload = time.perf_counter() - started
        started = time.perf_counter()
        response = client.post(f"/v1/jobs/{job['id']}/launch", headers=headers)
        launch = time.perf_counter() - started
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        free = response.get_json()["progress"]["answers_free"]
        dispose(app)
        return {
            "items": items,
            "overlap": overlap,
            "slots": free,
            "upload_s": round(upload, 2),
            "launch_s": round(launch, 2),
            "upload_us_per_item": round(upload / items * 1e6, 1),
            "launch_us_per_slot": round(launch / max(free, 1) * 1e6, 2),
        }
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True, help="an admin URL; a fresh database is made beside it")
    parser.add_argument("--items", type=int, nargs="+", default=[5000, 20000, 100000, 1000000])
    parser.add_argument("--overlap", type=int, default=3)
    args = parser.parse_args()
    for items in args.items:
        print(json.dumps(run(args.database_url, items, args.overlap)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
