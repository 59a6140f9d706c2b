"""Aggregate a big job from the database to stored results: time and peak memory.

    python -m bench.aggregate_db --database-url postgresql://postgres@127.0.0.1:5432/test --answers 10000000

Builds a fresh database with one job: answers/10 items, overlap 10, 20,000 workers (or fewer
for small runs) with accuracies from 0.5 to 0.95, 5 classes, generated inside PostgreSQL; then
runs `marketplace.services.aggregating.aggregate_job` (COPY out, auto aggregation, COPY in
of results and worker quality) and prints seconds, peak RSS of this process and accuracy.
"""

from __future__ import annotations

import argparse
import resource
import time
import uuid

import psycopg

from marketplace.db import make_engine, session_scope
from marketplace.migrate import upgrade
from marketplace.services.aggregating import aggregate_job

CLASSES = 5
# The true class of item i: a multiplicative hash, so that it is independent of which workers
# (chosen by i modulo the crowd size) answer the item.
TRUTH = "(({i}::bigint * 2654435761) % 4294967296 % 5)"


def build(url: str, items: int, workers: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO account (id, role, name, key_hash, status, created_at) VALUES "
            "(1, 'requester', 'bench', 'x', 'active', now())"
        )
        conn.execute(
            "INSERT INTO job (id, requester_id, title, instructions, annotation, overlap, golden_ratio, items_per_task,"
            " reward_cents, aggregation, lease_seconds, state, created_at, updated_at) VALUES (1, 1, 'bench', '',"
            ' \'{"type": "classification", "labels": ["0", "1", "2", "3", "4"]}\', 10, 0, 5, 1, \'auto\','
            " 600, 'completed', now(), now())"
        )
        conn.execute(
            "INSERT INTO item (id, job_id, data, is_golden, created_at) "
            "SELECT i, 1, '{}', false, now() FROM generate_series(1, %s) i",
            (items,),
        )
        step = workers // 10
        conn.execute(
            "INSERT INTO answer (job_id, item_id, worker_id, assignment_id, round, label, is_golden, excluded,"
            " created_at) SELECT 1, i, 1000 + (i + r * %(step)s) %% %(w)s, 0, r,"
            " CASE WHEN random() < 0.5 + 0.45 * ((i + r * %(step)s) %% %(w)s)::float / %(w)s"
            " THEN (" + TRUTH.replace("%", "%%").format(i="i") + ")::text"
            " ELSE (((" + TRUTH.replace("%", "%%").format(i="i") + ") + 1 + floor(random() * 4)::int) %% 5)::text END,"
            " false, false, now()"
            " FROM generate_series(1, %(items)s) i, generate_series(0, 9) r",
            {"step": step, "w": workers, "items": items},
        )
        conn.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="admin URL; a fresh database is made beside it")
    parser.add_argument("--answers", type=int, default=1_000_000)
    args = parser.parse_args()
    items = args.answers // 10
    workers = min(20_000, max(100, items // 50))
    name = f"bench_agg_{uuid.uuid4().hex[:8]}"
    base = args.database_url.rsplit("/", 1)[0]
    with psycopg.connect(args.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    try:
        upgrade(url)
        started = time.perf_counter()
        build(url, items, workers)
        built = time.perf_counter() - started
        print(f"built {items * 10:,} answers ({items:,} items, {workers:,} workers) in {built:.0f} s")
        engine = make_engine(url)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        with session_scope(engine) as session:
            summary = aggregate_job(session, 1)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT sum(CASE WHEN a.label = ("
                + TRUTH.format(i="a.item_id")
                + ")::text THEN 1 ELSE 0 END), count(*)"
                " FROM aggregate a WHERE job_id = 1"
            ).fetchone()
            assert row is not None
            right, total = row
        print(
            f"aggregated {summary['answers']:,} answers into {summary['items']:,} stored results with "
            f"{summary['method']} in {seconds:.1f} s; peak RSS {peak:.0f} MB (before: {rss_before:.0f} MB); "
            f"accuracy {right / total:.4f}"
        )
        engine.dispose()
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
