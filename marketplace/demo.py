"""`marketplace demo`: the whole loop on a simulated crowd, through the real HTTP API.

Starts the API (gunicorn) and an RQ worker as child processes on an embedded PostgreSQL and
Redis in a temporary data folder (or DATABASE_URL / REDIS_URL when set), creates accounts, posts a
job with keyed items, golden ones among them, lets a crowd of honest workers and spammers
work it, waits for background aggregation and prints a report. The report reads everything
as a requester would, from the API alone: results joined by key to the truth it uploaded.

The same `--seed` gives the same run on a fresh database: the same crowd, the same answers,
the same bans and the same accuracy. What makes that hold under a concurrent crowd:
- each simulated answer is a pure function of (seed, worker, item key);
- the work goes in rounds: every worker leases one task, one after another, in an order
  drawn from the seed each round (a crowd arrives in no fixed order); then the tasks are
  answered concurrently (submits do not change what the next lease finds) while the demo's
  one RQ worker is held by a barrier job (`hold_worker`), so the background work the submits
  queue (rules, bans, aggregation) runs after the round, against all of its answers; the demo
  waits until that has settled, so a ban always lands between the same two rounds, decided on
  the same answers; the periodic sweep is off;
- the API runs in one process with `MARKETPLACE_POOL_SEED` set: its golden draws, task order
  and upload shuffle come from one seeded stream (`pool/randomness.py`), consumed in
  the order the leases arrive. Never set that in production: it makes golden draws predictable.
Timings (throughput, latencies) and the money lines may differ between runs: a task is decided
against the aggregate of its time, and the background jobs of one round run in the order
their submits happened to finish.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

ANIMALS = ["cat", "dog", "bird", "horse", "fish", "cow", "sheep", "goat", "deer", "fox"]
LABELS = ANIMALS[:4]  # the default job's labels (`--labels` takes the first N animals)
QUEUE_NAME = "marketplace"


@dataclass(frozen=True)
class DemoSettings:
    items: int = 2000
    workers: int = 30
    spammers: int = 3
    golden_share: float = 0.05  # of the uploaded items
    concurrency: int = 16
    seed: int = 7
    overlap: int = 3
    items_per_task: int = 5
    golden_ratio: float = 0.1  # of each task's entries
    keep: bool = False
    labels: int = 4  # the first N of ANIMALS
    lowest_accuracy: float = 0.55  # honest workers from this up to 0.95

    @property
    def label_set(self) -> list[str]:
        return ANIMALS[: self.labels]


@dataclass
class SimWorker:
    name: str
    accuracy: float | None  # None: a spammer, uniform random answers
    key: str = ""
    id: int = 0
    banned: bool = False  # everywhere: its leases are refused
    answered: int = 0  # answers submitted (a banned worker's: those its ban was decided on)


@dataclass
class Stats:
    lease_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    answers: int = 0
    rounds: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def crowd(settings: DemoSettings) -> list[SimWorker]:
    """Honest workers with accuracies evenly from `lowest_accuracy` to 0.95, then the spammers."""
    honest, low = settings.workers - settings.spammers, settings.lowest_accuracy
    step = (0.95 - low) / max(honest - 1, 1)
    workers = [SimWorker(f"worker-{i + 1:02d}", round(low + i * step, 3)) for i in range(honest)]
    return workers + [SimWorker(f"spammer-{i + 1}", None) for i in range(settings.spammers)]


def simulated_answer(seed: int, worker: SimWorker, key: str, truth: str, labels: list[str] = LABELS) -> str:
    """What `worker` answers for the item `key`: the same on every run with this seed, whoever
    else is working and in whatever order the requests arrive."""
    rng = random.Random(f"{seed}:{worker.name}:{key}")
    if worker.accuracy is None:
        return rng.choice(labels)
    if rng.random() < worker.accuracy:
        return truth
    return rng.choice([label for label in labels if label != truth])


def demo_items(settings: DemoSettings) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The upload (keyed items, the first `golden_share` of them golden) and the truth by key."""
    rng = random.Random(settings.seed)
    golden = round(settings.items * settings.golden_share)
    items: list[dict[str, Any]] = []
    truth: dict[str, str] = {}
    for index in range(settings.items):
        key = f"animal-{index:06d}"
        truth[key] = rng.choice(settings.label_set)
        item: dict[str, Any] = {
            "key": key,
            "data": {"image_url": f"https://images.example/animals/{index:06d}.jpg", "width": 640, "height": 480},
        }
        if index < golden:
            item["answer"] = truth[key]
        items.append(item)
    return items, truth


# --- processes -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(data_dir: Path, seed: int) -> dict[str, str]:
    from marketplace.config import database_url, load, redis_url

    config = load({"DATA_DIR": str(data_dir)})
    env = dict(os.environ)
    env.update(
        {
            "MARKETPLACE_DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url(config),
            "REDIS_URL": redis_url(config),
            "MARKETPLACE_POOL_SEED": str(seed),  # the demo's API only: see the module's docstring
            # Fewer aggregations under way (the default is every 200): each round waits for the
            # background work, and the report aggregates at the end anyway.
            "MARKETPLACE_AGGREGATE_EVERY_ANSWERS": "1000",
            # No sweep during the run: its catch-up aggregation (and the bans that follow it)
            # would land every 10 s, between whichever rounds the machine's speed puts there,
            # and the same seed would not give the same run. The demo leaves nothing for it.
            "MARKETPLACE_SWEEP_SECONDS": str(24 * 3600),
        }
    )
    return env


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _wait_healthy(base: str, server: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise click.ClickException("the API server exited; see its log (run with --keep to keep it)")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise click.ClickException("the API server did not start in time")


def run_demo(settings: DemoSettings) -> dict[str, Any]:
    """Run the demo; the figures that a seed fixes (see the module's docstring)."""
    from marketplace import embedded, queue
    from marketplace.cli import GUNICORN_CONFIG
    from marketplace.migrate import upgrade

    data_dir = Path(tempfile.mkdtemp(prefix="marketplace-demo-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        env = _environment(data_dir, settings.seed)
        click.echo(f"data: {data_dir}\ndatabase: {env['DATABASE_URL'].split('@')[-1]}\nredis: {env['REDIS_URL']}")
        upgrade(env["DATABASE_URL"])
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        # One process: the seeded pool randomness is one stream per process (threads serve the
        # concurrent submits).
        command = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, "-b", f"127.0.0.1:{port}", "-w", "1"]
        processes.append(_start([*command, "marketplace.wsgi:app"], env, data_dir / "api.log"))
        worker = [sys.executable, "-m", "marketplace", "worker", "--no-fork"]  # many short rule checks
        processes.append(_start(worker, env, data_dir / "worker.log"))
        _wait_healthy(base, processes[0])
        click.echo(f"API on {base} (docs at {base}/docs), RQ worker pid {processes[1].pid}")
        return _run_marketplace(settings, base, env)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        queue.close_clients()
        embedded.stop(data_dir)  # before its folder goes: each server stops unless still in use
        if settings.keep:
            click.echo(f"kept the data folder {data_dir} (logs: api.log, worker.log)")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _operator_key(env: dict[str, str]) -> str:
    """The first operator (as `marketplace accounts create` makes it): every other account
    comes through the API."""
    from marketplace.db import make_engine, session_scope
    from marketplace.services.accounts import create_account

    engine = make_engine(env["DATABASE_URL"])
    with session_scope(engine) as session:
        _, key = create_account(session, "operator", "demo operator")
    engine.dispose()
    return key


# --- the marketplace at work -----------------------------------------------------------------


def ok(response: httpx.Response) -> Any:
    """The response's JSON body; a 4xx or 5xx stops the demo with the server's message."""
    if response.status_code >= 400:
        raise click.ClickException(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}"
        )
    return response.json() if response.content else None


def _run_marketplace(settings: DemoSettings, base: str, env: dict[str, str]) -> dict[str, Any]:
    # Idle connections are dropped after 30 s, before gunicorn's keep-alive (75 s,
    # `gunicorn_conf.KEEPALIVE_SECONDS`) closes them under a request (a reset connection).
    limits = httpx.Limits(max_connections=settings.concurrency + 2, keepalive_expiry=30.0)
    with httpx.Client(base_url=base, timeout=60, limits=limits) as client:
        return _with_client(settings, client, env)


def _with_client(settings: DemoSettings, client: httpx.Client, env: dict[str, str]) -> dict[str, Any]:
    operator = {"Authorization": f"Bearer {_operator_key(env)}"}

    def account(role: str, name: str) -> tuple[int, str]:
        body = ok(client.post("/v1/accounts", json={"role": role, "name": name}, headers=operator))
        return int(body["id"]), str(body["key"])

    requester_id, requester_key = account("requester", "demo requester")
    requester = {"Authorization": f"Bearer {requester_key}"}
    # Worst case: every task entry at top pay plus bonus, golden entries included, and reissued
    # rounds after bans; the unspent rest goes back to the requester's funds.
    budget_cents = settings.items * (settings.overlap + 1) * 2 * 3
    ok(
        client.post(
            f"/v1/accounts/{requester_id}/funds",
            json={"amount_cents": budget_cents, "currency": "USD"},
            headers=operator,
        )
    )
    workers = crowd(settings)
    for worker in workers:
        worker.id, worker.key = account("worker", worker.name)
    job = ok(
        client.post(
            "/v1/jobs",
            headers=requester,
            json={
                "title": "Which animal is in the picture?",
                "instructions": "Pick the animal you see in the image.",
                "annotation": {"type": "classification", "labels": settings.label_set},
                "overlap": settings.overlap,
                "golden_ratio": settings.golden_ratio,
                "items_per_task": settings.items_per_task,
                "pricing": {"model": "per_item", "cents": 2},
                "bonus": {"golden_accuracy_above": 0.85, "cents_per_item": 1},
                "acceptance": {"min_agreement": 0.5},
                "budget_cents": budget_cents,
            },
        )
    )
    items, truth = demo_items(settings)
    added = ok(client.post(f"/v1/jobs/{job['id']}/items", json=items, headers=requester))
    assert [ref["key"] for ref in added["items"]] == [item["key"] for item in items]  # in the order sent
    ok(client.post(f"/v1/jobs/{job['id']}/launch", headers=requester))
    click.echo(
        f"job {job['id']}: {added['added']} items ({added['golden']} golden), overlap {settings.overlap}, "
        f"aggregation {job['aggregation']}, {len(workers)} workers ({settings.spammers} spammers), "
        f"answers on {settings.concurrency} connections, seed {settings.seed}"
    )
    key_of = {item["data"]["image_url"]: item["key"] for item in items}  # what a worker "sees"
    stats = Stats()
    started = time.perf_counter()
    _work(settings, client, workers, key_of, truth, stats, job["id"], requester, env["REDIS_URL"])
    elapsed = time.perf_counter() - started
    from marketplace import demo_report

    return demo_report.report(
        demo_report.Run(
            settings, client, job["id"], requester, operator, workers, truth, stats, elapsed, env["REDIS_URL"]
        )
    )


def _work(
    settings: DemoSettings,
    client: httpx.Client,
    workers: list[SimWorker],
    key_of: dict[str, str],
    truth: dict[str, str],
    stats: Stats,
    job_id: int,
    requester: dict[str, str],
    redis_url: str,
) -> None:
    """Rounds until one leases nothing: every worker leases one task, in an order drawn from the
    seed each round; the tasks are answered concurrently; the background work settles (see the
    module's docstring)."""
    from redis import Redis

    redis = Redis.from_url(redis_url)
    last_print = time.monotonic()
    arrivals = random.Random(f"{settings.seed}:arrivals")
    with ThreadPoolExecutor(settings.concurrency) as answering:
        while True:
            release = hold_worker(redis, stats.rounds)
            order = arrivals.sample(workers, len(workers))  # a crowd arrives in no fixed order
            tasks = [(w, task) for w in order if not w.banned and (task := _lease(client, w, stats)) is not None]
            if not tasks:
                redis.set(release, 1)
                break
            answers = [answering.submit(_submit, client, settings, w, t, key_of, truth, stats) for w, t in tasks]
            for done in answers:
                done.result()
            stats.rounds += 1
            redis.set(release, 1)
            settle(redis)
            if time.monotonic() - last_print >= 2.0 or stats.rounds == 1:
                last_print = time.monotonic()
                progress = ok(client.get(f"/v1/jobs/{job_id}", headers=requester))["progress"]
                click.echo(
                    f"  round {stats.rounds:>3}: {progress['answers']:>6}/{progress['answers_wanted']} answers, "
                    f"{progress['answers_excluded']} excluded, {len(stats.errors)} errors"
                )
    redis.close()


def _lease(client: httpx.Client, worker: SimWorker, stats: Stats) -> dict[str, Any] | None:
    t0 = time.perf_counter()
    lease = client.post("/v1/assignments", json={}, headers={"Authorization": f"Bearer {worker.key}"})
    stats.lease_ms.append((time.perf_counter() - t0) * 1000)
    if lease.status_code == 403:  # banned everywhere: the account takes no more work
        worker.banned = True
        return None
    if lease.status_code == 204:
        return None
    if lease.status_code != 201:
        raise click.ClickException(f"lease: {lease.status_code} {lease.text[:300]}")
    return lease.json()  # type: ignore[no-any-return]


def _submit(
    client: httpx.Client,
    settings: DemoSettings,
    worker: SimWorker,
    task: dict[str, Any],
    key_of: dict[str, str],
    truth: dict[str, str],
    stats: Stats,
) -> None:
    answers = []
    for item in task["items"]:
        key = key_of[item["data"]["image_url"]]
        label = simulated_answer(settings.seed, worker, key, truth[key], settings.label_set)
        answers.append({"item_id": item["id"], "label": label})
    headers = {"Authorization": f"Bearer {worker.key}", "Idempotency-Key": f"demo-{task['id']}"}
    t0 = time.perf_counter()
    try:
        submit = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers)
    except httpx.TransportError:  # safe to send again: the Idempotency-Key makes it count once
        submit = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers)
    with stats.lock:
        stats.submit_ms.append((time.perf_counter() - t0) * 1000)
        if submit.status_code == 200:
            stats.answers += len(answers)
            worker.answered += len(answers)
        else:
            stats.errors.append(f"submit {submit.status_code}")


def hold_worker(redis: Any, round_number: int, seconds: float = 600) -> str:
    """Occupy the demo's one RQ worker with a barrier job (`workers.jobs.hold`) until the key
    returned is set: the work a round's submits queue waits behind it, so it runs after the
    round, against all of the round's answers, on a fast machine or a slow one."""
    from rq import Queue

    from marketplace.queue import HOLD_JOB

    key = f"marketplace:demo:round:{round_number}"
    Queue(QUEUE_NAME, connection=redis).enqueue(HOLD_JOB, key, seconds, job_timeout=int(seconds) + 60)
    return key


def settle(redis: Any, queue_name: str = QUEUE_NAME, seconds: float = 300) -> None:
    """Wait until the RQ queue is empty and no job runs, seen twice 50 ms apart (a job between
    its dequeue and its start shows in neither for an instant)."""
    from rq import Queue
    from rq.registry import StartedJobRegistry

    queue = Queue(queue_name, connection=redis)
    started = StartedJobRegistry(queue=queue)
    deadline = time.monotonic() + seconds
    quiet = 0
    while quiet < 2:
        if time.monotonic() > deadline:
            raise click.ClickException("the background work did not settle; see the worker log (--keep)")
        quiet = quiet + 1 if queue.count == 0 and started.count == 0 else 0
        time.sleep(0.05)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timing_line(stats: Stats, elapsed: float) -> str:
    return (
        f"{stats.rounds} rounds, {stats.answers / elapsed:.0f} answers/s over {elapsed:.1f}s; lease p50 "
        f"{statistics.median(stats.lease_ms or [0]):.1f} ms p99 {_percentile(stats.lease_ms, 0.99):.1f} ms (one at a "
        f"time); submit p50 {statistics.median(stats.submit_ms or [0]):.1f} ms p99 "
        f"{_percentile(stats.submit_ms, 0.99):.1f} ms"
    )


def read_exports(client: httpx.Client, job_id: int, requester: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The results three ways, each as {key: label}: JSON pages, the CSV and the JSON Lines export."""
    pages: dict[str, Any] = {}
    after = 0
    while True:
        page = ok(client.get(f"/v1/jobs/{job_id}/results", params={"after": after, "limit": 1000}, headers=requester))
        pages.update({row["key"]: row["label"] for row in page["results"]})
        if page["next_after"] is None:
            break
        after = page["next_after"]
    text = client.get(f"/v1/jobs/{job_id}/results", params={"format": "csv"}, headers=requester).text
    from_csv = {row["key"]: row["label"] or None for row in csv.DictReader(io.StringIO(text))}
    text = client.get(f"/v1/jobs/{job_id}/results", params={"format": "jsonl"}, headers=requester).text
    from_jsonl = {row["key"]: row["label"] for row in map(json.loads, text.splitlines())}
    return {"json": pages, "csv": from_csv, "jsonl": from_jsonl}
