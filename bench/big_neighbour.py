"""Does a lease's cost depend on other jobs' size? A small job's lease+submit, alone and next to
a job of a million free slots (and leases on that big job itself).

    python -m bench.big_neighbour --database-url postgresql://postgres@127.0.0.1:5432/test [--slots 1000000]

In-process, single-threaded, on a fresh database: the service calls `pool.lease.lease_task` and
`pool.submit.submit` on the hot engine (no HTTP). Prints one JSON line per phase: the median and
95th percentile milliseconds of a lease and of a submit. The audit saw every lease on every
job take 1.0-1.35 s after a PATCH to overlap 47 on a 50,000-item job (2.35M slots): JIT compiled
the generic lease plan on every call. The big job's items are made directly in SQL (setup, not
what is measured); its launch goes through the API and is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import text

from bench.inprocess import fresh_app


def cycles(app: Any, job_id: int, workers: list[int], count: int) -> dict[str, Any]:
    from marketplace.db import get_hot_engine
    from marketplace.models import utcnow
    from marketplace.pool import lease, submit

    engine = get_hot_engine(app)
    lease_ms, submit_ms = [], []
    with app.app_context():
        for n in range(count):
            worker = workers[n % len(workers)]
            t0 = time.perf_counter()
            task = lease.lease_task(engine, worker, job_id)
            t1 = time.perf_counter()
            assert task is not None, "the job ran out of work"
            answers = [{"item_id": item["id"], "label": "a"} for item in task.items]
            submit.submit(engine, worker, task.id, answers, uuid.uuid4().hex, utcnow())
            t2 = time.perf_counter()
            lease_ms.append((t1 - t0) * 1000)
            submit_ms.append((t2 - t1) * 1000)

    def figures(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"p50": round(statistics.median(ordered), 2), "p95": round(ordered[int(0.95 * len(ordered))], 2)}

    return {"lease_ms": figures(lease_ms), "submit_ms": figures(submit_ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True, help="an admin URL; a fresh database is made beside it")
    parser.add_argument("--slots", type=int, default=1_000_000, help="free slots of the big job")
    parser.add_argument("--cycles", type=int, default=400)
    args = parser.parse_args()

    from marketplace.db import get_engine, session_scope

    with fresh_app(args.database_url, "bench_big", workers=50) as bench:
        app, client, headers, workers = bench.app, bench.client, bench.headers, bench.workers

        def job(items: int, overlap: int) -> int:
            spec = {
                "title": "b",
                "instructions": "x",
                "annotation": {"type": "classification", "labels": ["a", "b"]},
                "overlap": overlap,
                "golden_ratio": 0.0,
                "items_per_task": 5,
                "reward_cents": 1,
                "budget_cents": 10**11,
            }
            made = client.post("/v1/jobs", json=spec, headers=headers).get_json()
            batch = [{"data": {"n": n}} for n in range(items)]
            assert client.post(f"/v1/jobs/{made['id']}/items", json=batch, headers=headers).status_code == 201
            return int(made["id"])

        small = job(args.cycles * 5 + 500, 1)
        assert client.post(f"/v1/jobs/{small}/launch", headers=headers).status_code == 200
        print(json.dumps({"phase": "small job alone", **cycles(app, small, workers, args.cycles)}), flush=True)
        overlap = 47
        big_items = max(1, args.slots // overlap)
        big = job(1000, overlap)  # then the rest of its items in SQL, not through the API (setup only)
        with session_scope(get_engine(app)) as session:
            session.execute(
                text(
                    "INSERT INTO item (job_id, key, data, is_golden, shown, created_at) "
                    "SELECT :job, 'k' || g, json_build_object('n', g), false, 0, now() "
                    "FROM generate_series(1001, :n) g"
                ),
                {"job": big, "n": big_items},
            )
        started = time.perf_counter()
        assert client.post(f"/v1/jobs/{big}/launch", headers=headers).status_code == 200
        launched = time.perf_counter() - started
        with session_scope(get_engine(app)) as session:
            session.execute(text("ANALYZE"))
            free = session.execute(text("SELECT count(*) FROM slot WHERE job_id = :j"), {"j": big}).scalar_one()
        print(json.dumps({"phase": "big job launched", "slots": free, "launch_s": round(launched, 2)}), flush=True)
        small2 = job(args.cycles * 5 + 500, 1)
        assert client.post(f"/v1/jobs/{small2}/launch", headers=headers).status_code == 200
        print(json.dumps({"phase": "small job next to the big one", **cycles(app, small2, workers, args.cycles)}))
        print(json.dumps({"phase": "the big job itself", **cycles(app, big, workers, args.cycles)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
