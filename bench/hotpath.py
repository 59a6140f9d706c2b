"""Hot-path benchmark: lease + submit cycles against gunicorn on PostgreSQL, then invariants.

    python -m bench.hotpath --database-url postgresql://postgres@127.0.0.1:5432/test \
        [--kind classification|bbox] [--concurrency 20 50] [--tasks 3000] [--gunicorn-workers N]
        [--worker-class gthread] [--gunicorn-threads 8] [--no-access-log] [--json] [--keep]

Creates its own database (dropped at the end unless --keep), posts one job through the API
(`--kind bbox`: a box job on 1280x720 frames, 5 frames a task, each answered with 2 to 4 boxes),
drives `POST /v1/assignments` then `POST /v1/assignments/{id}/submit` from C client threads
(raw http.client, one connection each; a cycle budget shared by all threads), and prints
throughput, latency percentiles and CPU per cycle of gunicorn and of PostgreSQL (psutil: the
gunicorn master and workers; the postmaster's auxiliary processes and the backends of this
database), then checks the database invariants. Exits 1 when an invariant fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from marketplace.cli import GUNICORN_CONFIG
from marketplace.db import make_engine, normalise_url, session_scope
from marketplace.gunicorn_conf import PROCESSES as SERVE_PROCESSES
from marketplace.gunicorn_conf import THREADS as SERVE_THREADS

LABELS = ["cat", "dog", "bird", "fish"]
BOX_LABELS = ["person", "car", "bicycle", "sign"]
WIDTH, HEIGHT = 1280, 720
HOST = "127.0.0.1"
Snapshot = dict[str, dict[tuple[int, float], float]]  # group -> (pid, start time) -> CPU seconds


@dataclass
class Level:
    """What the clients of one concurrency level saw."""

    lease_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    cycles: int = 0
    answers: int = 0
    no_work: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Accepted:
    """Every submit that got 200: assignment id -> answers the server said it stored."""

    answers: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """One keep-alive connection (gunicorn's sync workers close it; http.client reopens)."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)
        self.auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        try:
            self.conn.request(method, path, body=payload, headers={**self.auth, **(headers or {})})
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        if response.will_close:
            self.conn.close()
        return response.status, (json.loads(raw) if raw else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def admin_sql(admin_url: str, sql: str) -> None:
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(sql))
    admin.dispose()


def create_database(admin_url: str) -> tuple[str, str]:
    name = f"bench_hotpath_{uuid.uuid4().hex[:10]}"
    admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BUDGET_CENTS = 10**9  # 1 cent per item (the default price): holds and decisions are on the hot path


def create_accounts(url: str, workers: int) -> tuple[str, list[str]]:
    from marketplace.services import ledger
    from marketplace.services.accounts import create_account

    engine = make_engine(url)
    with session_scope(engine) as session:
        account, requester = create_account(session, "requester", "bench-requester")
        assert account.id is not None
        ledger.fund(session, account.id, BUDGET_CENTS, "USD", actor_id=0, key=None)  # pays every task
        keys = [create_account(session, "worker", f"bench-worker-{i}")[1] for i in range(workers)]
    engine.dispose()
    return requester, keys


def boxes(rng: random.Random) -> list[dict[str, Any]]:
    """2 to 4 boxes inside a 1280x720 frame (~3 an answer, as a street scene's people and cars)."""
    drawn = []
    for _ in range(rng.randint(2, 4)):
        w, h = round(rng.uniform(20, 200), 1), round(rng.uniform(40, 300), 1)
        x, y = round(rng.uniform(0, WIDTH - w), 1), round(rng.uniform(0, HEIGHT - h), 1)
        drawn.append({"label": rng.choice(BOX_LABELS), "bbox": [x, y, w, h]})
    return drawn


def truth(data: dict[str, Any]) -> str:
    """A classification item's true label (its golden answer too)."""
    return LABELS[int(data["n"]) % len(LABELS)]


def answer(kind: str, rng: random.Random, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A box answer, or a label right 85% of the time (an honest crowd: the quality rules, run
    by RQ workers in bench.capacity, ban none of it)."""
    if kind == "bbox":
        return {"objects": boxes(rng)}
    if data is not None and rng.random() < 0.85:
        return {"label": truth(data)}
    return {"label": rng.choice(LABELS)}


def post_job(port: int, key: str, real: int, golden: int, kind: str = "classification") -> int:
    client = Client(port, key)
    frame = {"width": WIDTH, "height": HEIGHT}
    if kind == "bbox":
        annotation: dict[str, Any] = {"type": "bbox", "labels": BOX_LABELS}
        data = [{"image_url": f"https://example.com/frames/{i}.jpg", **frame} for i in range(real + golden)]
    else:
        annotation = {"type": "classification", "labels": LABELS}
        data = [{"text": f"item {i}", "n": i} for i in range(real + golden)]
    body = {"title": "bench", "instructions": "Pick one.", "annotation": annotation, "overlap": 3, "golden_ratio": 0.1}
    status, job = client.call("POST", "/v1/jobs", {**body, "items_per_task": 5, "budget_cents": BUDGET_CENTS})
    assert status == 201, (status, job)
    rng = random.Random(7)
    items: list[dict[str, Any]] = [{"data": data[i]} for i in range(real)]
    for i in range(real, real + golden):
        gold = answer(kind, rng) if kind == "bbox" else truth(data[i])
        items.append({"data": data[i], "answer": gold})
    rng.shuffle(items)
    for start in range(0, len(items), 20_000):
        status, added = client.call("POST", f"/v1/jobs/{job['id']}/items", items[start : start + 20_000])
        assert status == 201, (status, added)
    status, launched = client.call("POST", f"/v1/jobs/{job['id']}/launch")
    assert status == 200 and launched["state"] == "running", (status, launched)
    return int(job["id"])


def start_server(args: argparse.Namespace, url: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    metrics_dir = data_dir / "prometheus"  # as `marketplace serve` does: emptied, then shared
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = dict(os.environ, DATABASE_URL=url, REDIS_URL=args.redis_url, MARKETPLACE_DATA_DIR=str(data_dir))
    env.update(MARKETPLACE_ACCESS_LOG=str(args.access_log).lower(), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    command = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, "-b", f"{HOST}:{port}"]
    command += ["-w", str(args.gunicorn_workers), "-k", args.worker_class, "--threads", str(args.gunicorn_threads)]
    command += ["--chdir", str(Path(__file__).resolve().parent.parent)]
    command += ["marketplace.wsgi:app"]  # the access log (a JSON line a request) goes to gunicorn.log
    log = (data_dir / "gunicorn.log").open("ab")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"gunicorn exited; see {data_dir / 'gunicorn.log'}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return server
        except OSError:
            time.sleep(0.2)
    sys.exit("gunicorn did not start in time")


def server_processes(server_pid: int, dbname: str) -> dict[str, list[psutil.Process]]:
    """gunicorn master+workers; the postmaster's children except backends of other databases."""
    master = psutil.Process(server_pid)
    gunicorn = [master, *master.children(recursive=True)]
    backends: list[psutil.Process] = []
    shared: list[psutil.Process] = []
    backend = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")
    for proc in psutil.process_iter(["username", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["username"] != "postgres" or not cmdline.startswith("postgres:"):
            continue
        match = backend.match(cmdline)
        if match is None:
            shared.append(proc)  # walwriter, checkpointer, ...: they also work for other databases
        elif match.group(1) == dbname:
            backends.append(proc)
    return {"gunicorn": gunicorn, "pg_backends": backends, "pg_shared": shared}


def cpu_snapshot(groups: dict[str, list[psutil.Process]]) -> Snapshot:
    snap: Snapshot = {}
    for name, procs in groups.items():
        snap[name] = {}
        for proc in procs:
            try:
                times = proc.cpu_times()
                snap[name][(proc.pid, proc.create_time())] = times.user + times.system
            except psutil.Error:
                continue
    return snap


def cpu_delta(before: Snapshot, after: Snapshot) -> dict[str, float]:
    delta = {name: sum(v - before.get(name, {}).get(k, 0.0) for k, v in after[name].items()) for name in after}
    delta["postgres"] = delta["pg_backends"] + delta["pg_shared"]
    return delta


def timed(client: Client, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, float]:
    start = time.perf_counter()
    try:
        status, payload = client.call("POST", path, body, headers)
    except (OSError, http.client.HTTPException) as error:
        status, payload = -1, type(error).__name__
    return status, payload, (time.perf_counter() - start) * 1000


def worker_loop(
    port: int, key: str, job_id: int, budget: list[int], level: Level, accepted: Accepted, kind: str
) -> None:
    client, rng = Client(port, key), random.Random()
    while True:
        with level.lock:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        status, task, lease_ms = timed(client, "/v1/assignments", {"job_id": job_id})
        submit_ms: float | None = None
        result: Any = None
        if status == 201:
            answers = [{"item_id": item["id"], **answer(kind, rng, item["data"])} for item in task["items"]]
            path, key_header = f"/v1/assignments/{task['id']}/submit", {"Idempotency-Key": uuid.uuid4().hex}
            status, result, submit_ms = timed(client, path, {"answers": answers}, key_header)
        with level.lock:
            level.lease_ms.append(lease_ms)
            if submit_ms is not None:
                level.submit_ms.append(submit_ms)
            if status == 200:
                level.cycles += 1
                level.answers += int(result["answers"])
            elif status == 204:
                level.no_work += 1
            else:
                name = f"{'submit' if submit_ms is not None else 'lease'} {status}"
                level.errors[name] = level.errors.get(name, 0) + 1
        if status == 200:
            with accepted.lock:
                accepted.answers[int(task["id"])] = int(result["answers"])
        elif status == 204:
            return


def vacuum_loop(engine: Engine, every: float, stop: threading.Event) -> None:
    """The table upkeep the RQ sweep runs every 10 s (`workers.jobs.maintain_tables`): vacuum
    the consumed slot pool and refresh statistics where autovacuum is off."""
    from workers.jobs import maintain_tables

    while not stop.wait(every):
        maintain_tables(engine)


def run_level(
    ports: list[int], keys: list[str], job_id: int, cycles: int, accepted: Accepted, kind: str
) -> tuple[Level, float]:
    """Client i talks to ports[i % len(ports)]."""
    level = Level()
    budget = [cycles]
    threads = [
        threading.Thread(
            target=worker_loop,
            args=(ports[i % len(ports)], key, job_id, budget, level, accepted, kind),
            daemon=True,
        )
        for i, key in enumerate(keys)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return level, time.perf_counter() - start


def check_invariants(engine: Engine, job_id: int, accepted: Accepted) -> dict[str, Any]:
    """Each check: (ok, detail)."""
    params = {"job": job_id}
    with engine.connect() as conn:

        def scalar(sql: str) -> int:
            return int(conn.execute(text(sql), params).scalar_one())

        overlap = scalar("SELECT overlap FROM job WHERE id = :job")
        over = scalar(
            "SELECT count(*) FROM (SELECT item_id FROM answer WHERE job_id = :job AND round IS NOT NULL"
            f" GROUP BY item_id HAVING count(*) > {overlap}) x"
        )
        twice = scalar(
            "SELECT count(*) FROM (SELECT 1 FROM answer WHERE job_id = :job"
            " GROUP BY item_id, worker_id HAVING count(*) > 1) x"
        )
        rows = conn.execute(
            text("SELECT assignment_id, count(*) FROM answer WHERE job_id = :job GROUP BY assignment_id"), params
        ).all()
        stored = {int(aid): int(n) for aid, n in rows}
        slot_and_answer = scalar(
            "SELECT count(*) FROM slot s JOIN answer a ON a.job_id = s.job_id AND a.item_id = s.item_id"
            " AND a.round = s.round WHERE s.job_id = :job"
        )
        slot_and_leased = scalar(
            "SELECT count(*) FROM slot s JOIN assignmentitem ai ON ai.job_id = s.job_id"
            " AND ai.item_id = s.item_id AND ai.round = s.round"
            " JOIN assignment a ON a.id = ai.assignment_id AND a.state = 'leased' WHERE s.job_id = :job"
        )
        wanted = overlap * scalar("SELECT count(*) FROM item WHERE job_id = :job AND NOT is_golden")
        accounted = scalar(
            "SELECT (SELECT count(*) FROM slot WHERE job_id = :job)"
            " + (SELECT count(*) FROM answer WHERE job_id = :job AND round IS NOT NULL)"
            " + (SELECT count(*) FROM assignmentitem ai JOIN assignment a ON a.id = ai.assignment_id"
            "    WHERE ai.job_id = :job AND a.state = 'leased' AND ai.round IS NOT NULL)"
        )
    with accepted.lock:
        seen = dict(accepted.answers)
    missing = sum(1 for aid, n in seen.items() if stored.get(aid, 0) != n)
    return {
        "no_over_redundancy": (over == 0, f"{over} items with more than {overlap} answers"),
        "no_item_answered_twice_by_a_worker": (twice == 0, f"{twice} (item, worker) pairs with >1 answer"),
        "accepted_submits_stored": (
            missing == 0 and sum(seen.values()) == sum(stored.values()),
            f"{len(seen)} submits / {sum(seen.values())} answers accepted by the client;"
            f" {len(stored)} assignments / {sum(stored.values())} answer rows; {missing} mismatched",
        ),
        "no_slot_both_free_and_answered": (slot_and_answer == 0, f"{slot_and_answer} (item, round) in both"),
        "no_slot_both_free_and_leased": (slot_and_leased == 0, f"{slot_and_leased} (item, round) in both"),
        "every_slot_accounted_once": (accounted == wanted, f"free+answered+leased={accounted}, wanted={wanted}"),
    }


def report(args: argparse.Namespace, c: int, level: Level, seconds: float, cpu: dict[str, float], extra: Any) -> Any:
    """extra: (client CPU seconds, machine busy share, invariant checks)."""
    client_cpu, busy, checks = extra
    n, ms = max(level.cycles, 1), 1000

    def pcts(values: list[float]) -> dict[str, float]:
        return {"p50": round(percentile(values, 0.5), 2), "p99": round(percentile(values, 0.99), 2)}

    r = {
        "kind": args.kind,
        "concurrency": c,
        "gunicorn_workers": args.gunicorn_workers,
        "access_log": args.access_log,
        "worker_class": args.worker_class,
        "cycles": level.cycles,
        "seconds": round(seconds, 2),
        "cycles_per_s": round(level.cycles / seconds, 1),
        "answers_per_s": round(level.answers / seconds, 1),
        "lease_ms": pcts(level.lease_ms),
        "submit_ms": pcts(level.submit_ms),
        "server_cpu_ms_per_cycle": round((cpu["gunicorn"] + cpu["postgres"]) * ms / n, 2),
        "gunicorn_cpu_ms_per_cycle": round(cpu["gunicorn"] * ms / n, 2),
        "postgres_cpu_ms_per_cycle": round(cpu["postgres"] * ms / n, 2),
        "postgres_backends_cpu_ms_per_cycle": round(cpu["pg_backends"] * ms / n, 2),
        "postgres_shared_cpu_ms_per_cycle": round(cpu["pg_shared"] * ms / n, 2),
        "client_cpu_ms_per_cycle": round(client_cpu * ms / n, 2),
        "client_cpu_share": round(client_cpu / (seconds * (psutil.cpu_count() or 1)), 3),
        "machine_busy": round(busy, 3),
        "no_work": level.no_work,
        "errors": level.errors,
        "invariants": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()},
    }
    if args.json:
        print(json.dumps(r), flush=True)
        return r
    print(
        f"\n== {args.kind}, concurrency {c}: {r['cycles']} cycles in {r['seconds']} s"
        f" ({args.gunicorn_workers} {args.worker_class} x {args.gunicorn_threads} threads"
        f"{', access log' if args.access_log else ''})"
    )
    print(f"  cycles/s {r['cycles_per_s']}   answers/s {r['answers_per_s']}")
    print(f"  lease  p50 {r['lease_ms']['p50']} ms  p99 {r['lease_ms']['p99']} ms")
    print(f"  submit p50 {r['submit_ms']['p50']} ms  p99 {r['submit_ms']['p99']} ms")
    print(
        f"  server CPU {r['server_cpu_ms_per_cycle']} ms/cycle (gunicorn {r['gunicorn_cpu_ms_per_cycle']} + postgres ",
        end="",
    )
    print(f"{r['postgres_cpu_ms_per_cycle']} = backends {r['postgres_backends_cpu_ms_per_cycle']}", end="")
    print(f" + shared {r['postgres_shared_cpu_ms_per_cycle']});", end="")
    print(f" client CPU {r['client_cpu_ms_per_cycle']} ms/cycle = ", end="")
    print(f"{r['client_cpu_share']:.1%} of the machine; machine busy {busy:.1%}")
    print(f"  errors {level.errors or 0}; no work (204) {level.no_work}")
    for name, (ok, detail) in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="admin URL; a fresh database is created beside it")
    parser.add_argument("--kind", choices=["classification", "bbox"], default="classification")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--tasks", type=int, default=2000, help="lease+submit cycles per concurrency level")
    parser.add_argument("--gunicorn-workers", type=int, default=SERVE_PROCESSES)
    # as `marketplace serve` runs it; `--worker-class sync --gunicorn-threads 1` for the older rows
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--gunicorn-threads", type=int, default=SERVE_THREADS, help="threads per worker (gthread)")
    parser.add_argument(
        "--no-access-log", dest="access_log", action="store_false", help="without the access log (serve has one)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured cycles before the first level")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE after posting the job (as autovacuum would)")
    parser.add_argument(
        "--vacuum-every", type=float, default=10, help="run the sweep's table upkeep every N s (0: never)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per concurrency level")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()

    dbname, url = create_database(args.database_url)
    log = sys.stderr if args.json else sys.stdout
    print(f"database {dbname}", file=log, flush=True)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-hotpath-"))
    server: subprocess.Popen[bytes] | None = None
    failed = False
    try:
        from marketplace.migrate import upgrade

        upgrade(url)
        requester, keys = create_accounts(url, max(args.concurrency))
        port = free_port()
        server = start_server(args, url, port, data_dir)
        total = args.warmup + args.tasks * len(args.concurrency)
        real = math.ceil(total * 5 / 3 * 1.25) + 100
        job_id = post_job(port, requester, real, max(300, real // 9), args.kind)
        print(
            f"{args.kind} job {job_id}: {real} real items, overlap 3; gunicorn pid {server.pid} on port {port}",
            file=log,
            flush=True,
        )
        engine = make_engine(url)
        if args.analyze:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
        stop = threading.Event()
        if args.vacuum_every:
            threading.Thread(target=vacuum_loop, args=(engine, args.vacuum_every, stop), daemon=True).start()
        accepted = Accepted()
        if args.warmup:
            run_level([port], keys[: min(10, len(keys))], job_id, args.warmup, accepted, args.kind)
        for concurrency in args.concurrency:
            groups = server_processes(server.pid, dbname)
            me = psutil.Process()
            before, client_before, machine_before = cpu_snapshot(groups), me.cpu_times(), psutil.cpu_times()
            level, seconds = run_level([port], keys[:concurrency], job_id, args.tasks, accepted, args.kind)
            groups = server_processes(server.pid, dbname)  # backends opened during the run count whole
            after, client_after, machine_after = cpu_snapshot(groups), me.cpu_times(), psutil.cpu_times()
            client_cpu = client_after.user + client_after.system - client_before.user - client_before.system
            idle = machine_after.idle - machine_before.idle
            total_cpu = sum(machine_after) - sum(machine_before)
            checks = check_invariants(engine, job_id, accepted)
            busy = 1 - idle / total_cpu if total_cpu else 0.0
            report(args, concurrency, level, seconds, cpu_delta(before, after), (client_cpu, busy, checks))
            failed = failed or not all(ok for ok, _ in checks.values()) or bool(level.errors)
        stop.set()
        engine.dispose()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        if args.keep:
            print(f"kept database {dbname} ({url}); server log {data_dir / 'gunicorn.log'}", file=log)
        else:
            drop_database(args.database_url, dbname)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
