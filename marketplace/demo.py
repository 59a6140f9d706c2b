"""`marketplace demo`: the whole loop on a simulated crowd, through the real HTTP API.

Starts the API (gunicorn) and an RQ worker as child processes on an embedded PostgreSQL and
Redis in a fresh folder (or DATABASE_URL / REDIS_URL when set), creates accounts, posts a job with
golden items, lets a crowd of honest workers and spammers lease and submit concurrently,
waits for background aggregation and prints a report.
"""

from __future__ import annotations

import os
import queue as queue_module
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

LABELS = ["cat", "dog", "bird", "horse"]


@dataclass(frozen=True)
class DemoSettings:
    items: int = 2000
    workers: int = 30
    spammers: int = 3
    golden_share: float = 0.05
    concurrency: int = 16
    seed: int = 7
    overlap: int = 3
    items_per_task: int = 5


@dataclass
class SimWorker:
    name: str
    accuracy: float | None  # None: a spammer, uniform random answers
    key: str = ""
    id: int = 0
    answered: int = 0


@dataclass
class Stats:
    lease_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    answers: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(data_dir: Path) -> dict[str, str]:
    from marketplace.config import database_url, load, redis_url

    config = load({"DATA_DIR": str(data_dir)})
    env = dict(os.environ)
    env.update(
        {
            "MARKETPLACE_DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url(config),
            "REDIS_URL": redis_url(config),
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
            raise click.ClickException("the API server exited; see its log")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise click.ClickException("the API server did not start in time")


def _crowd(settings: DemoSettings) -> list[SimWorker]:
    honest = settings.workers - settings.spammers
    step = (0.95 - 0.55) / max(honest - 1, 1)
    crowd = [SimWorker(f"worker-{i + 1:02d}", round(0.55 + i * step, 3)) for i in range(honest)]
    crowd += [SimWorker(f"spammer-{i + 1}", None) for i in range(settings.spammers)]
    return crowd


def _answer(worker: SimWorker, truth: str, rng: random.Random) -> str:
    if worker.accuracy is None:
        return rng.choice(LABELS)
    if rng.random() < worker.accuracy:
        return truth
    return rng.choice([label for label in LABELS if label != truth])


def run_demo(settings: DemoSettings) -> None:
    from marketplace.migrate import upgrade

    data_dir = Path(tempfile.mkdtemp(prefix="marketplace-demo-"))
    env = _environment(data_dir)
    click.echo(f"data: {data_dir}\ndatabase: {env['DATABASE_URL'].split('@')[-1]}\nredis: {env['REDIS_URL']}")
    upgrade(env["DATABASE_URL"])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--threads",
            "8",
            "marketplace.wsgi:app",
        ],
        env,
        data_dir / "api.log",
    )
    rq_worker = _start([sys.executable, "-m", "marketplace", "worker"], env, data_dir / "worker.log")
    try:
        _wait_healthy(base, server)
        click.echo(f"API on {base} (docs at {base}/docs), RQ worker pid {rq_worker.pid}")
        _run_marketplace(settings, base, env)
    finally:
        for process in (server, rq_worker):
            process.terminate()
        for process in (server, rq_worker):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _operator_key(env: dict[str, str]) -> str:
    from marketplace.db import make_engine, session_scope
    from marketplace.services.accounts import create_account

    engine = make_engine(env["DATABASE_URL"])
    with session_scope(engine) as session:
        _, key = create_account(session, "operator", "demo operator")
    engine.dispose()
    return key


def _run_marketplace(settings: DemoSettings, base: str, env: dict[str, str]) -> None:
    rng = random.Random(settings.seed)
    client = httpx.Client(base_url=base, timeout=60)
    operator = {"Authorization": f"Bearer {_operator_key(env)}"}

    def account(role: str, name: str) -> tuple[int, str]:
        body = _ok(client.post("/v1/accounts", json={"role": role, "name": name}, headers=operator))
        return int(body["id"]), str(body["key"])

    requester_id, requester_key = account("requester", "demo requester")
    requester = {"Authorization": f"Bearer {requester_key}"}
    # Worst case: every task entry at top pay plus bonus, golden entries included, and reissued
    # rounds after bans; the unspent rest goes back to the requester's funds.
    budget_cents = settings.items * (settings.overlap + 1) * 2 * 3
    funds = {"amount_cents": budget_cents, "currency": "USD"}
    _ok(client.post(f"/v1/accounts/{requester_id}/funds", json=funds, headers=operator))
    crowd = _crowd(settings)
    for worker in crowd:
        worker.id, worker.key = account("worker", worker.name)
    job = _ok(
        client.post(
            "/v1/jobs",
            headers=requester,
            json={
                "title": "Which animal is in the picture?",
                "instructions": "Pick the animal you see in the image.",
                "annotation": {"type": "classification", "labels": LABELS},
                "overlap": settings.overlap,
                "golden_ratio": 0.1,
                "items_per_task": settings.items_per_task,
                "pricing": {"model": "per_item", "cents": 2},
                "bonus": {"golden_accuracy_above": 0.85, "cents_per_item": 1},
                "acceptance": {"min_agreement": 0.5},
                "budget_cents": budget_cents,
                "aggregation": "dawid_skene",
            },
        )
    )
    truth: dict[str, str] = {}
    items: list[dict[str, Any]] = []
    golden_count = round(settings.items * settings.golden_share)
    for index in range(settings.items):
        url = f"https://images.example/animals/{index:06d}.jpg"
        truth[url] = rng.choice(LABELS)
        item: dict[str, Any] = {"data": {"image_url": url, "width": 640, "height": 480}}
        if index < golden_count:
            item["answer"] = truth[url]
        items.append(item)
    added = _ok(client.post(f"/v1/jobs/{job['id']}/items", json=items, headers=requester))
    _ok(client.post(f"/v1/jobs/{job['id']}/launch", headers=requester))
    click.echo(
        f"job {job['id']}: {added['added']} items ({added['golden']} golden), overlap "
        f"{settings.overlap}, {len(crowd)} workers ({settings.spammers} spammers), "
        f"{settings.concurrency} concurrent"
    )
    stats = Stats()
    started = time.perf_counter()
    _work(settings, base, crowd, truth, stats, job["id"], client, requester)
    for _ in range(5):  # a rule that banned a worker reopens its rounds: the crowd comes back for them
        time.sleep(2.0)
        if client.get(f"/v1/jobs/{job['id']}", headers=requester).json()["state"] == "completed":
            break
        _work(settings, base, crowd, truth, stats, job["id"], client, requester)
    elapsed = time.perf_counter() - started
    final = _wait_aggregated(client, job["id"], requester)
    _report(settings, client, job["id"], requester, crowd, truth, items, stats, elapsed, final, env, operator)
    _money_report(client, job["id"], requester, operator, crowd)


def _money_report(
    client: httpx.Client, job_id: int, requester: dict[str, str], operator: dict[str, str], crowd: list[SimWorker]
) -> None:
    """Decisions, the job's spend, a payout run and the ledger check."""
    deadline = time.monotonic() + 120
    while (spend := _ok(client.get(f"/v1/jobs/{job_id}/spend", headers=requester)))["held_cents"] > 0:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)  # decisions follow the last aggregation
    run = _ok(client.post("/v1/payouts/runs", headers={**operator, "Idempotency-Key": f"demo-{job_id}"}))
    while run["state"] != "done" and time.monotonic() < deadline + 60:
        time.sleep(0.5)
        run = _ok(client.get(f"/v1/payouts/runs/{run['id']}", headers=operator))
    check = _ok(client.get("/v1/ledger/check", headers=operator))
    click.echo("\n== money ==")
    click.echo(
        f"tasks accepted {spend['accepted']}, rejected {spend['rejected']}; spend: work {spend['work_cents']} + "
        f"bonus {spend['bonus_cents']} of a {spend['budget_cents']} budget ({spend['currency']} cents), "
        f"held {spend['held_cents']}, left {spend['available_cents']}"
    )
    paid = {int(line["worker_id"]): line["amount_cents"] for line in run.get("lines", [])}
    spammers = [w for w in crowd if w.accuracy is None]
    click.echo(
        f"payout run {run['id']} ({run['state']}): {run['workers']} workers, {run['total_cents']} cents; "
        f"spammers paid {sum(paid.get(w.id, 0) for w in spammers)} cents in all; "
        f"ledger check: {'balanced, every accepted task paid once' if check['ok'] else check['problems'][:3]}"
    )


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise click.ClickException(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}"
        )
    return response.json()


def _work(
    settings: DemoSettings,
    base: str,
    crowd: list[SimWorker],
    truth: dict[str, str],
    stats: Stats,
    job_id: int,
    client: httpx.Client,
    requester: dict[str, str],
) -> None:
    """Workers take turns on `concurrency` threads until the pool has nothing for any of them."""
    idle: queue_module.Queue[SimWorker] = queue_module.Queue()
    for worker in crowd:
        idle.put(worker)
    threads = [
        threading.Thread(target=_crowd_thread, args=(base, idle, truth, stats, settings.seed + n), daemon=True)
        for n in range(settings.concurrency)
    ]
    for thread in threads:
        thread.start()
    wanted = (settings.items - round(settings.items * settings.golden_share)) * settings.overlap
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        job = client.get(f"/v1/jobs/{job_id}", headers=requester).json()
        done = job["progress"]["answers"]
        click.echo(
            f"  {done:>6}/{wanted} answers, {stats.answers} incl. golden, "
            f"{len(stats.errors)} errors, state {job['state']}"
        )


def _crowd_thread(
    base: str, idle: queue_module.Queue[SimWorker], truth: dict[str, str], stats: Stats, seed: int
) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as client:
        while True:
            try:
                worker = idle.get_nowait()
            except queue_module.Empty:
                return
            if _cycle(client, worker, truth, stats, rng):
                idle.put(worker)


def _cycle(client: httpx.Client, worker: SimWorker, truth: dict[str, str], stats: Stats, rng: random.Random) -> bool:
    """One lease and submit; False when there is no more work for this worker."""
    headers = {"Authorization": f"Bearer {worker.key}"}
    t0 = time.perf_counter()
    lease = client.post("/v1/assignments", json={}, headers=headers)
    t1 = time.perf_counter()
    if lease.status_code in (204, 403):  # no work for this worker (403: banned everywhere)
        return False
    if lease.status_code != 201:
        with stats.lock:
            stats.errors.append(f"lease {lease.status_code}")
        return len(stats.errors) < 50
    task = lease.json()
    answers = [
        {"item_id": item["id"], "label": _answer(worker, truth[item["data"]["image_url"]], rng)}
        for item in task["items"]
    ]
    headers["Idempotency-Key"] = f"demo-{task['id']}"
    submit = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers)
    t2 = time.perf_counter()
    with stats.lock:
        stats.lease_ms.append((t1 - t0) * 1000)
        stats.submit_ms.append((t2 - t1) * 1000)
        if submit.status_code == 200:
            stats.answers += len(answers)
            worker.answered += len(answers)
        else:
            stats.errors.append(f"submit {submit.status_code}")
    return True


def _wait_aggregated(
    client: httpx.Client, job_id: int, requester: dict[str, str], seconds: float = 300
) -> dict[str, Any]:
    """Wait until the background aggregation has used every answer of the finished job."""
    deadline = time.monotonic() + seconds
    client.post(f"/v1/jobs/{job_id}/aggregate", headers=requester)
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=requester).json()
        run = job["progress"].get("last_aggregation") or {}
        total = job["progress"]["answers"] + job["progress"]["golden_answers"]
        if run.get("answers_used") == total and job["state"] == "completed":
            return job  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise click.ClickException("aggregation did not finish in time; see the worker log")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(
    settings: DemoSettings,
    client: httpx.Client,
    job_id: int,
    requester: dict[str, str],
    crowd: list[SimWorker],
    truth: dict[str, str],
    items: list[dict[str, Any]],
    stats: Stats,
    elapsed: float,
    job: dict[str, Any],
    env: dict[str, str],
    operator: dict[str, str],
) -> None:
    import aggregation
    from marketplace.db import make_engine, session_scope
    from marketplace.services.aggregating import load_golden
    from marketplace.services.bulk import copy_answers

    results: list[dict[str, Any]] = []
    after = 0
    while True:
        page = _ok(client.get(f"/v1/jobs/{job_id}/results", params={"after": after, "limit": 1000}, headers=requester))
        results += page["results"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    engine = make_engine(env["DATABASE_URL"])
    with session_scope(engine) as session:
        answers, _ = copy_answers(session, job_id)
        golden = load_golden(session, job_id)
        item_truth = _item_truth(session, job_id, truth)
    engine.dispose()
    mv = aggregation.aggregate(answers, method="majority_vote", golden=golden, labels=LABELS)

    def accuracy(pairs: dict[int, str | None]) -> float:
        return sum(1 for item_id, label in pairs.items() if label == item_truth[item_id]) / max(len(pairs), 1)

    served = {int(r["item_id"]): r["label"] for r in results}
    mv_labels = {int(task): label for task, label in mv.labels.items() if task not in golden.index}
    cycles = len(stats.submit_ms)
    click.echo("\n== report ==")
    click.echo(
        f"items {len(served)} real + {len(golden)} golden; answers collected "
        f"{job['progress']['answers']} real + {job['progress']['golden_answers']} golden "
        f"(wanted {job['progress']['answers_wanted']}); errors {len(stats.errors)}"
    )
    click.echo(
        f"accuracy vs truth: dawid-skene (served by the API, {results[0]['method'] if results else '-'}) "
        f"{accuracy(served):.3f}; majority vote {accuracy(mv_labels):.3f}"
    )
    click.echo(
        f"throughput: {cycles / elapsed:.0f} lease+submit cycles/s, {stats.answers / elapsed:.0f} answers/s "
        f"over {elapsed:.1f}s; lease p50 {statistics.median(stats.lease_ms):.1f} ms "
        f"p99 {_percentile(stats.lease_ms, 0.99):.1f} ms; submit p50 {statistics.median(stats.submit_ms):.1f} ms "
        f"p99 {_percentile(stats.submit_ms, 0.99):.1f} ms"
    )
    scores = {int(q["worker_id"]): q for q in _ok(client.get(f"/v1/jobs/{job_id}/workers", headers=requester))}
    banned = {
        int(e["subject_id"]): e["details"].get("figures", {})
        for e in _ok(client.get("/v1/audit", headers=operator))
        if e["action"] in ("ban", "ban_job")
    }
    click.echo(f"answers excluded after bans: {job['progress']['answers_excluded']} (their rounds were issued again)")
    click.echo("\nworker          true acc  golden seen  golden acc (smoothed)  agreement  banned by rule")
    for worker in sorted(crowd, key=lambda w: -1 if w.accuracy is None else w.accuracy):
        q = scores.get(worker.id, {})
        true_acc = "spam" if worker.accuracy is None else f"{worker.accuracy:.2f}"
        golden_acc = q.get("golden_accuracy")
        agreement = q.get("agreement")
        click.echo(
            f"{worker.name:<15} {true_acc:>8}  {q.get('golden_seen', 0):>11}  "
            f"{'-' if golden_acc is None else f'{golden_acc:.2f}':>21}  "
            f"{'-' if agreement is None else f'{agreement:.2f}':>9}"
            + (f"  yes, after {banned[worker.id].get('golden_seen', '?')} golden" if worker.id in banned else "")
        )


def _item_truth(session: Any, job_id: int, truth: dict[str, str]) -> dict[int, str]:
    from sqlalchemy import select

    from marketplace.models import Item

    rows = session.execute(select(Item.id, Item.data).where(Item.job_id == job_id)).all()
    return {int(r.id): truth[r.data["image_url"]] for r in rows}
