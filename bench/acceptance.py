"""What deciding submitted work costs: statements, seconds, and how long the job's money rows stay locked.

    python -m bench.acceptance --database-url postgresql://postgres@127.0.0.1:5432/test [--tasks 2000] [--bonus]

In-process, single-threaded, on a fresh database (dropped at the end): a classification job of
`--tasks` tasks (5 items each, overlap 3, one item in ten golden) is posted through the API,
leased and submitted by 60 workers through the pool (no HTTP; two in three answer right), aggregated
(`services.aggregating`), then decided by one `acceptance.decide_job` call, which is what is
measured. Every batch of that call holds the job's budget and holds rows, which every lease of the
job also updates, from its first money statement to its commit: the longest and the median of
those spans are printed, with the statements a task and the seconds. The ledger is checked after.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import event, text

from bench.inprocess import fresh_app

LABELS = ["a", "b", "c"]


def fill(app: Any, job_id: int, workers: list[int], tasks: int, rng: random.Random) -> None:
    """Lease and submit every task of the job; golden items are answered right, the rest right
    two times in three (the item's `n` modulo 3 is its true label)."""
    from marketplace.db import get_hot_engine
    from marketplace.models import utcnow
    from marketplace.pool import lease, submit

    engine = get_hot_engine(app)
    with app.app_context():
        for n in range(tasks):
            worker = workers[n % len(workers)]
            task = lease.lease_task(engine, worker, job_id)
            if task is None:
                break
            answers = []
            for item in task.items:
                truth = LABELS[int(item["data"]["n"]) % 3]
                label = truth if rng.random() < 2 / 3 else rng.choice(LABELS)
                answers.append({"item_id": item["id"], "label": label})
            submit.submit(engine, worker, task.id, answers, uuid.uuid4().hex, utcnow())


def decide(app: Any, job_id: int) -> dict[str, Any]:
    """Time one decision run, counting statements and the spans that hold the job's money rows."""
    from marketplace.db import get_engine, session_scope
    from marketplace.services import acceptance, ledger_audit

    engine = get_engine(app)
    statements = 0
    locked_at: list[float] = []
    spans: list[float] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal statements
        statements += 1
        if "FOR UPDATE" in statement and "ledgerbalance" in statement and not locked_at:
            locked_at.append(time.perf_counter())

    def committed(conn: Any) -> None:
        if locked_at:
            spans.append(time.perf_counter() - locked_at.pop())

    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "commit", committed)
    try:
        with session_scope(engine) as session:
            started = time.perf_counter()
            counts = acceptance.decide_job(session, job_id, acceptance.Limits.from_config(app.config))
            seconds = time.perf_counter() - started
        with session_scope(engine) as session:
            problems = ledger_audit.check(session)
            paid = session.execute(
                text("SELECT coalesce(sum(balance), 0) FROM ledgerbalance WHERE account LIKE 'worker:%'")
            )
            workers_paid = int(paid.scalar_one())
    finally:
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "commit", committed)
    decided = counts["accepted"] + counts["rejected"]
    return {
        **counts,
        "decided": decided,
        "seconds": round(seconds, 3),
        "statements": statements,
        "statements_a_task": round(statements / max(decided, 1), 2),
        "money_rows_held_ms": {
            "median": round(1000 * statistics.median(spans), 1) if spans else None,
            "max": round(1000 * max(spans), 1) if spans else None,
            "batches": len(spans),
        },
        "workers_paid_cents": workers_paid,
        "ledger_problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True, help="an admin URL; a fresh database is made beside it")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--bonus", action="store_true", help="a golden-accuracy bonus on the job")
    parser.add_argument("--json", action="store_true", help="one JSON line (the default prints it indented)")
    args = parser.parse_args()

    from marketplace.db import get_engine, session_scope
    from marketplace.services import aggregating

    with fresh_app(args.database_url, "bench_accept", workers=60) as bench:
        app, client, headers = bench.app, bench.client, bench.headers
        items = args.tasks * 5 // 3
        golden = items // 9
        spec: dict[str, Any] = {
            "title": "acceptance bench",
            "instructions": "pick one",
            "annotation": {"type": "classification", "labels": LABELS},
            "overlap": 3,
            "golden_ratio": 0.1,
            "items_per_task": 5,
            "reward_cents": 2,
            "budget_cents": 10**10,
            "acceptance": {"min_agreement": 0.5},
        }
        if args.bonus:
            spec["bonus"] = {"golden_accuracy_above": 0.5, "cents_per_item": 1}
        made = client.post("/v1/jobs", json=spec, headers=headers)
        assert made.status_code == 201, made.get_json()
        job_id = int(made.get_json()["id"])
        batch: list[dict[str, Any]] = [{"data": {"n": n}} for n in range(items)]
        batch += [{"data": {"n": n}, "answer": LABELS[n % 3]} for n in range(items, items + golden)]
        added = client.post(f"/v1/jobs/{job_id}/items", json=batch, headers=headers)
        assert added.status_code == 201, added.get_json()
        assert client.post(f"/v1/jobs/{job_id}/launch", headers=headers).status_code == 200
        fill(app, job_id, bench.workers, args.tasks, random.Random(7))
        with session_scope(get_engine(app)) as session:
            aggregating.aggregate_job(session, job_id)
        print(json.dumps(decide(app, job_id), indent=None if args.json else 2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
