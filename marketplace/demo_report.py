"""The demo's report, read from the API alone, as a requester (and an operator) would.

Accuracy is the share of real items whose served label equals the truth the demo uploaded,
joined by the items' keys; the results are read three ways (JSON pages, CSV, JSON Lines) and
must agree. Majority vote is scored the same way: the job is switched to it, aggregated,
read, and switched back (and the served labels must come back unchanged: aggregation is
reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
import httpx

from marketplace.demo import (
    DemoSettings,
    SimWorker,
    Stats,
    ok,
    read_exports,
    settle,
    timing_line,
)


@dataclass
class Run:
    settings: DemoSettings
    client: httpx.Client
    job_id: int
    requester: dict[str, str]
    operator: dict[str, str]
    workers: list[SimWorker]
    truth: dict[str, str]
    stats: Stats
    elapsed: float
    redis_url: str


def accuracy(labels: dict[str, Any], truth: dict[str, str]) -> float:
    """Share of the results whose label is the truth of their key."""
    return sum(1 for key, label in labels.items() if label == truth[key]) / max(len(labels), 1)


def worker_rows(
    workers: list[SimWorker], scores: dict[int, dict[str, Any]], bans: dict[int, dict[str, Any]]
) -> list[str]:
    """The per-worker table. A banned worker's answers are left out of its job's quality, so its
    golden figures are the ones its ban was decided on (the audit's): "golden seen" is then
    the G of "banned after N answers (G golden)"; N counts the golden ones too."""
    lines = ["worker          true acc  golden seen  golden acc  agreement  banned by rule"]
    for worker in sorted(workers, key=lambda w: -1 if w.accuracy is None else w.accuracy):
        true_acc = "spam" if worker.accuracy is None else f"{worker.accuracy:.2f}"
        score = scores.get(worker.id, {})
        ban = bans.get(worker.id)
        if ban is not None:
            seen, correct = int(ban.get("golden_seen", 0)), int(ban.get("golden_correct", 0))
            golden_acc: float | None = correct / seen if seen else None
            seen_text = f"{seen}*"
        else:
            seen_text, golden_acc = str(score.get("golden_seen", 0)), score.get("golden_accuracy")
        agreement = score.get("agreement")
        lines.append(
            f"{worker.name:<15} {true_acc:>8}  {seen_text:>11}  "
            f"{'-' if golden_acc is None else f'{golden_acc:.2f}':>10}  "
            f"{'-' if agreement is None else f'{agreement:.2f}':>9}"
            + ("" if ban is None else f"  yes, after {worker.answered} answers ({ban.get('golden_seen', '?')} golden)")
        )
    if bans:
        lines.append("* as the ban rule saw them: a banned worker's answers are left out of the job's figures")
    return lines


def _aggregated(run: Run, redis: Any) -> dict[str, Any]:
    """Aggregate now and wait for it (and for what follows it: rules, decisions)."""
    ok(run.client.post(f"/v1/jobs/{run.job_id}/aggregate", headers=run.requester))
    settle(redis)
    return ok(run.client.get(f"/v1/jobs/{run.job_id}", headers=run.requester))  # type: ignore[no-any-return]


def _results(run: Run) -> dict[str, Any]:
    exports = read_exports(run.client, run.job_id, run.requester)
    if not exports["json"] == exports["csv"] == exports["jsonl"]:
        raise click.ClickException("the JSON, CSV and JSON Lines results disagree")
    return exports["json"]


def _with_method(run: Run, redis: Any, method: str) -> dict[str, Any]:
    ok(run.client.patch(f"/v1/jobs/{run.job_id}", json={"aggregation": method}, headers=run.requester))
    _aggregated(run, redis)
    return _results(run)


def report(run: Run) -> dict[str, Any]:
    """Print the report; return the figures a seed fixes."""
    from redis import Redis

    redis = Redis.from_url(run.redis_url)
    job = _aggregated(run, redis)
    progress, method = job["progress"], job["aggregation"]
    served = _results(run)
    money = _money(run, redis)
    majority = _with_method(run, redis, "majority_vote")
    again = _with_method(run, redis, method)
    redis.close()
    scores = {
        int(q["worker_id"]): q for q in ok(run.client.get(f"/v1/jobs/{run.job_id}/workers", headers=run.requester))
    }
    audit = ok(run.client.get("/v1/audit", params={"limit": 1000}, headers=run.operator))
    bans = {int(e["subject_id"]): e["details"].get("figures", {}) for e in audit if e["action"].startswith("ban")}
    figures = {
        "items": len(served),
        "golden_items": progress["golden_items"],
        "answers": progress["answers"],
        "golden_answers": progress["golden_answers"],
        "answers_excluded": progress["answers_excluded"],
        "state": job["state"],
        "stuck": progress["stuck"],
        "accuracy": {
            method: round(accuracy(served, run.truth), 4),
            "majority_vote": round(accuracy(majority, run.truth), 4),
        },
        "banned_after_golden": {w.name: bans[w.id].get("golden_seen") for w in run.workers if w.id in bans},
        "banned_after_answers": {w.name: w.answered for w in run.workers if w.id in bans},
        "workers": {w.name: scores.get(w.id) for w in run.workers},
    }
    click.echo("\n== report (read from the API, joined by item key) ==")
    click.echo(
        f"items {len(served)} real + {progress['golden_items']} golden; answers collected {progress['answers']} real "
        f"+ {progress['golden_answers']} golden (wanted {progress['answers_wanted']}); errors {len(run.stats.errors)}"
    )
    click.echo(f"results read as JSON, CSV and JSON Lines: {len(served)} rows each, the same label for every key")
    click.echo(
        f"accuracy vs truth: {method} (served) {figures['accuracy'][method]:.3f}; majority vote "
        f"{figures['accuracy']['majority_vote']:.3f}; {method} again after that: "
        f"{'the same labels' if again == served else 'DIFFERENT labels'}"
    )
    stuck = f" ({progress['stuck']})" if progress["stuck"] else ""
    click.echo(f"job {job['state']}{stuck}, done {progress['done']}")
    click.echo(f"timing: {timing_line(run.stats, run.elapsed)}")
    click.echo(f"answers excluded after bans: {progress['answers_excluded']} (their rounds were issued again)\n")
    for line in worker_rows(run.workers, scores, bans):
        click.echo(line)
    click.echo("\n== money ==")
    for line in money:
        click.echo(line)
    return figures


def _money(run: Run, redis: Any) -> list[str]:
    """Decisions, the job's spend, a payout run and the ledger check."""
    spend = ok(run.client.get(f"/v1/jobs/{run.job_id}/spend", headers=run.requester))
    headers = {**run.operator, "Idempotency-Key": f"demo-{run.job_id}"}
    payout = ok(run.client.post("/v1/payouts/runs", headers=headers))
    settle(redis)
    payout = ok(run.client.get(f"/v1/payouts/runs/{payout['id']}", headers=run.operator))
    check = ok(run.client.get("/v1/ledger/check", headers=run.operator))
    paid = {int(line["worker_id"]): line["amount_cents"] for line in payout.get("lines", [])}
    spammers = [w for w in run.workers if w.accuracy is None]
    return [
        f"tasks accepted {spend['accepted']}, rejected {spend['rejected']}; spend: work {spend['work_cents']} + "
        f"bonus {spend['bonus_cents']} of a {spend['budget_cents']} budget ({spend['currency']} cents), "
        f"held {spend['held_cents']}, left {spend['available_cents']}",
        f"payout run {payout['id']} ({payout['state']}): {payout['workers']} workers, {payout['total_cents']} cents; "
        f"spammers paid {sum(paid.get(w.id, 0) for w in spammers)} cents in all; "
        f"ledger check: {'balanced, every accepted task paid once' if check['ok'] else check['problems'][:3]}",
    ]
