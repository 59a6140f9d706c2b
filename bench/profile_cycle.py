"""Profile lease+submit cycles in-process (Flask test client, PostgreSQL): where the CPU goes.

    python -m bench.profile_cycle --database-url postgresql://postgres@127.0.0.1:5432/test [--cycles 500]

Single-threaded, so no CPU contention blurs the figures. Prints (1) the API process's CPU per
cycle split by layer (cProfile with a CPU-time clock, self time grouped by package) and a few
inclusive figures, and (2) every SQL statement of a cycle with its count per cycle, round-trip
wall time and the PostgreSQL backend's CPU (from /proc/<backend>/schedstat, in nanoseconds).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import re
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.hotpath import BUDGET_CENTS, LABELS, create_accounts, create_database, drop_database

LAYERS = ["psycopg", "sqlalchemy", "sqlmodel", "pydantic", "marshmallow", "flask_smorest", "webargs", "apispec"]
LAYERS += ["werkzeug", "flask", "marketplace", "redis", "rq", "json"]


def backend_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as handle:
        return int(handle.read().split()[0])


def layer_of(filename: str) -> str:
    for name in LAYERS:
        if f"/{name}/" in filename or f"/{name}." in filename:
            return name
    return "python stdlib/other" if "/python3" in filename or filename.startswith("<") else filename


def shape(sql: str) -> str:
    sql = re.sub(r"\s+", " ", sql)
    sql = re.sub(r"\(%\(\w+\)s(?:, %\(\w+\)s)*\)", "(...)", sql)
    sql = re.sub(r"VALUES .*", "VALUES ...", sql)
    return sql[:150]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--workers", type=int, default=20)
    args = parser.parse_args()
    name, url = create_database(args.database_url)
    try:
        return run(args, url)
    finally:
        drop_database(args.database_url, name)


def run(args: argparse.Namespace, url: str) -> int:
    from sqlalchemy import event

    from marketplace import create_app
    from marketplace.db import get_engine, get_hot_engine
    from marketplace.migrate import upgrade

    upgrade(url)
    requester, keys = create_accounts(url, args.workers)
    app = create_app({"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/14", "TESTING": True})
    client = app.test_client()

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    job = client.post(
        "/v1/jobs",
        json={
            "title": "profile",
            "instructions": "x",
            "annotation": {"type": "classification", "labels": LABELS},
            "budget_cents": BUDGET_CENTS,
        },
        headers=auth(requester),
    ).get_json()
    real = args.cycles * 8 + 1000
    items: list[dict[str, Any]] = [{"data": {"text": f"item {i}"}} for i in range(real)]
    items += [{"data": {"text": f"gold {i}"}, "answer": random.choice(LABELS)} for i in range(real // 9)]
    assert client.post(f"/v1/jobs/{job['id']}/items", json=items, headers=auth(requester)).status_code == 201
    assert client.post(f"/v1/jobs/{job['id']}/launch", headers=auth(requester)).status_code == 200

    def cycle(index: int) -> None:
        headers = auth(keys[index % len(keys)])
        task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=headers).get_json()
        answers = [{"item_id": item["id"], "label": random.choice(LABELS)} for item in task["items"]]
        response = client.post(
            f"/v1/assignments/{task['id']}/submit",
            json={"answers": answers},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert response.status_code == 200, response.get_json()

    for index in range(50):  # warm caches: compiled statements, prepared statements, auth, golden pool
        cycle(index)
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(args.cycles):
        cycle(index)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"unprofiled: {wall / args.cycles * 1000:.2f} ms wall, API process {cpu / args.cycles * 1000:.2f} CPU-ms/cycle"
    )

    engines = [get_engine(app), get_hot_engine(app)]
    stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    pids: set[int] = set()
    patched = _measure_statements(stats, pids)

    def _checkout(dbapi: Any, *_: Any) -> None:
        pids.add(dbapi.info.backend_pid)

    for engine in engines:
        event.listen(engine, "checkout", _checkout)

    for index in range(20):  # records the backend pids
        cycle(index)
    backend_start = {pid: backend_ns(pid) for pid in pids}
    stats.clear()
    profiler = cProfile.Profile(time.process_time)
    wall, cpu = time.perf_counter(), time.process_time()
    profiler.enable()
    for index in range(args.cycles):
        cycle(index)
    profiler.disable()
    patched.clear()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    backend = sum(backend_ns(pid) - start for pid, start in backend_start.items()) / 1e9
    n = args.cycles
    print(f"{n} cycles: {wall / n * 1000:.2f} ms wall, API process {cpu / n * 1000:.2f} CPU-ms,")
    print(
        f"PostgreSQL backend {backend / n * 1000:.2f} CPU-ms per cycle (profiler overhead included in the API figure)"
    )

    profile = pstats.Stats(profiler)
    raw: dict[Any, Any] = profile.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    by_layer: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tottime, _, _) in raw.items():
        by_layer[layer_of(filename)] += tottime
    print("\nAPI process CPU by layer (self time), ms per cycle:")
    for layer, seconds in sorted(by_layer.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {seconds / n * 1000:7.2f}  {seconds / total:6.1%}  {layer}")
    print("\nInclusive, ms per cycle:")
    for (filename, line, func), (_, _, _, cumtime, _) in sorted(raw.items(), key=lambda kv: -kv[1][3]):
        if (
            "marketplace" in filename or func in {"compile", "_execute_context", "execute", "commit", "dump", "load"}
        ) and (cumtime / total > 0.02):
            print(f"  {cumtime / n * 1000:7.2f}  {cumtime / total:6.1%}  {func} ({Path(filename).name}:{line})")

    print("\nSQL per cycle: count, round-trip wall ms, PostgreSQL backend CPU ms (sum over the cycle's executions)")
    stmt_cpu = 0.0
    for sql, (count, seconds, backend_cpu) in sorted(stats.items(), key=lambda kv: -kv[1][2]):
        stmt_cpu += backend_cpu
        print(f"  {count / n:4.1f}  {seconds / n * 1000:6.3f}  {backend_cpu / n * 1000:6.3f}  {sql}")
    outside = (backend - stmt_cpu) / n * 1000
    print(f"  backend CPU outside these statements (protocol, BEGIN without a statement): {outside:.3f} ms")
    return 0


def _measure_statements(stats: dict[str, list[float]], pids: set[int]) -> list[Any]:
    """Time every psycopg statement and commit (SQLAlchemy's and the raw hot path's alike),
    with the backend's CPU from /proc; returns a list that, cleared, stops the measuring."""
    import psycopg

    active: list[Any] = [True]
    execute, commit = psycopg.Cursor.execute, psycopg.Connection.commit

    def measured(label: str, pid: int, call: Any) -> Any:
        if not active:
            return call()
        wall0, cpu0 = time.perf_counter(), backend_ns(pid)
        try:
            return call()
        finally:
            entry = stats[label]
            entry[0] += 1
            entry[1] += time.perf_counter() - wall0
            entry[2] += (backend_ns(pid) - cpu0) / 1e9

    def timed_execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        pid = self.connection.info.backend_pid
        text = query if isinstance(query, str) else str(query)
        return measured(shape(text), pid, lambda: execute(self, query, params, **kwargs))

    def timed_commit(self: Any) -> Any:
        return measured("COMMIT", self.info.backend_pid, lambda: commit(self))

    psycopg.Cursor.execute = timed_execute  # type: ignore[method-assign,assignment]
    psycopg.Connection.commit = timed_commit  # type: ignore[method-assign,assignment]
    return active


if __name__ == "__main__":
    sys.exit(main())
