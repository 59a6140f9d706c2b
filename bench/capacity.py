"""What one PostgreSQL primary carries: several API processes and RQ workers against it.

    python -m bench.capacity --database-url postgresql://postgres@127.0.0.1:5432/test \
        [--servers 2] [--rq-workers 2] [--no-rq-fork] [--concurrency 40] [--tasks 5000] [--json]

As bench.hotpath (a database of its own, one job posted through the API, client threads doing
lease + submit cycles, the invariants checked at the end), but with `--servers` gunicorn
servers on as many ports (client i talks to server i mod N) and `--rq-workers` RQ workers
(`marketplace worker`, as deployed: a forked child per job) working what the submits queue
(the rules check after each submit). After the clients stop, the queue is drained and the CPU
of that work is counted too. It reports cycles/s, CPU-ms per cycle of the API processes, the
RQ workers and PostgreSQL, and the projected ceiling of one primary:
cores x 1000 / (PostgreSQL CPU-ms per cycle); API processes and RQ workers scale out on other
hosts, the primary does not. The projection assumes PostgreSQL's CPU is what runs out (not
locks, disk or network) and work spread over several jobs; it is a ceiling, not a promise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import redis as redis_lib

from bench.hotpath import (
    Accepted,
    check_invariants,
    create_accounts,
    create_database,
    drop_database,
    free_port,
    percentile,
    post_job,
    run_level,
    server_processes,
    start_server,
    vacuum_loop,
)
from marketplace.db import make_engine
from marketplace.gunicorn_conf import THREADS as SERVE_THREADS

Snapshot = dict[str, float]


def start_rq_worker(url: str, redis_url: str, data_dir: Path, fork: bool) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DATABASE_URL=url, REDIS_URL=redis_url, MARKETPLACE_DATA_DIR=str(data_dir))
    log = (data_dir / "rq.log").open("ab")
    command = [sys.executable, "-m", "marketplace", "worker", "--fork" if fork else "--no-fork"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes, their live children and the children they reaped
    (an RQ job's forked child is gone by the time we look)."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            times = root.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for child in root.children(recursive=True):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        except psutil.Error:
            continue
    return total


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
        return float(times.user + times.system)
    except psutil.Error:
        return 0.0


def snapshot(servers: list[int], rq_workers: list[int], dbname: str) -> Snapshot:
    groups = server_processes(servers[0], dbname)
    pg = {"pg_backends": groups["pg_backends"], "pg_shared": groups["pg_shared"]}
    pg_seconds = {name: sum(_cpu(p) for p in procs) for name, procs in pg.items()}
    return {"api": tree_cpu(servers), "rq": tree_cpu(rq_workers), **pg_seconds}


def queued(redis_url: str) -> int:
    """Jobs waiting or running in every RQ queue."""
    connection = redis_lib.Redis.from_url(redis_url)
    waiting = sum(int(connection.llen(key)) for key in connection.scan_iter("rq:queue:*"))
    running = sum(int(connection.zcard(key)) for key in connection.scan_iter("rq:wip:*"))
    return waiting + running


def drain(redis_url: str, limit: float) -> float:
    start = time.monotonic()
    while queued(redis_url) and time.monotonic() - start < limit:
        time.sleep(0.2)
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="admin URL; a fresh database is created beside it")
    parser.add_argument("--servers", type=int, default=2, help="gunicorn servers, one port each")
    parser.add_argument("--gunicorn-workers", type=int, default=1, help="processes per server")
    parser.add_argument("--gunicorn-threads", type=int, default=SERVE_THREADS)
    parser.add_argument("--rq-workers", type=int, default=2)
    parser.add_argument(
        "--rq-fork", action=argparse.BooleanOptionalAction, default=True, help="a child per RQ job (the default)"
    )
    parser.add_argument("--concurrency", type=int, default=40, help="client threads")
    parser.add_argument("--tasks", type=int, default=5000, help="lease+submit cycles measured")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="a Redis database to itself")
    parser.add_argument("--primary-cores", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.kind, args.worker_class, args.access_log = "classification", "gthread", True

    redis_lib.Redis.from_url(args.redis_url).flushdb()
    dbname, url = create_database(args.database_url)
    root = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    servers: list[subprocess.Popen[bytes]] = []
    rq_workers: list[subprocess.Popen[bytes]] = []
    failed = True
    try:
        from marketplace.migrate import upgrade

        upgrade(url)
        requester, keys = create_accounts(url, args.concurrency)
        ports = []
        for n in range(args.servers):
            (root / f"api{n}").mkdir()
            ports.append(free_port())
            servers.append(start_server(args, url, ports[-1], root / f"api{n}"))
        for n in range(args.rq_workers):
            (root / f"rq{n}").mkdir()
            rq_workers.append(start_rq_worker(url, args.redis_url, root / f"rq{n}", args.rq_fork))
        total = args.warmup + args.tasks
        real = math.ceil(total * 5 / 3 * 1.25) + 100
        job_id = post_job(ports[0], requester, real, max(300, real // 9))
        engine = make_engine(url)
        stop = threading.Event()
        threading.Thread(target=vacuum_loop, args=(engine, 10.0, stop), daemon=True).start()
        accepted = Accepted()
        run_level(ports, keys[:10], job_id, args.warmup, accepted, args.kind)
        drain(args.redis_url, 60)
        server_pids, rq_pids = [s.pid for s in servers], [w.pid for w in rq_workers]
        before, machine_before = snapshot(server_pids, rq_pids, dbname), psutil.cpu_times()
        level, seconds = run_level(ports, keys, job_id, args.tasks, accepted, args.kind)
        backlog = queued(args.redis_url)
        drained = drain(args.redis_url, 120)
        after, machine_after = snapshot(server_pids, rq_pids, dbname), psutil.cpu_times()
        stop.set()
        checks = check_invariants(engine, job_id, accepted)
        engine.dispose()
        delta = {name: after[name] - before.get(name, 0.0) for name in after}
        delta = {**delta, "postgres": delta["pg_backends"] + delta["pg_shared"]}
        busy = 1 - (machine_after.idle - machine_before.idle) / max(sum(machine_after) - sum(machine_before), 1e-9)
        n = max(level.cycles, 1)
        pg_ms = delta["postgres"] * 1000 / n
        result = {
            "servers": args.servers,
            "gunicorn_workers_each": args.gunicorn_workers,
            "rq_workers": args.rq_workers,
            "rq_fork": args.rq_fork,
            "concurrency": args.concurrency,
            "machine_cores": psutil.cpu_count(),
            "cycles": level.cycles,
            "seconds": round(seconds, 2),
            "cycles_per_s": round(level.cycles / seconds, 1),
            "answers_per_s": round(level.answers / seconds, 1),
            "lease_ms_p50": round(percentile(level.lease_ms, 0.5), 2),
            "lease_ms_p99": round(percentile(level.lease_ms, 0.99), 2),
            "submit_ms_p50": round(percentile(level.submit_ms, 0.5), 2),
            "submit_ms_p99": round(percentile(level.submit_ms, 0.99), 2),
            "queue_at_end": backlog,
            "queue_drained_s": round(drained, 1),
            "api_cpu_ms_per_cycle": round(delta["api"] * 1000 / n, 2),
            "rq_cpu_ms_per_cycle": round(delta["rq"] * 1000 / n, 2),
            "postgres_cpu_ms_per_cycle": round(pg_ms, 2),
            "machine_busy": round(busy, 3),
            "errors": level.errors,
            "projected_cycles_per_s": {str(c): round(c * 1000 / pg_ms) for c in args.primary_cores},
            "invariants": {name: ok for name, (ok, _) in checks.items()},
        }
        failed = bool(level.errors) or not all(ok for ok, _ in checks.values())
        print(json.dumps(result) if args.json else json.dumps(result, indent=2), flush=True)
    finally:
        for proc in [*servers, *rq_workers]:
            proc.terminate()
        for proc in [*servers, *rq_workers]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop_database(args.database_url, dbname)
        redis_lib.Redis.from_url(args.redis_url).flushdb()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
