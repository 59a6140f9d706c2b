"""Deciding submitted work: accepted (and paid from its hold) or rejected with a reason.

Runs after each aggregation (`workers.jobs.aggregate_job`) and from the sweep for work nobody
decided in time. A task is rejected when its worker's answers were dropped for cause (a ban
that excluded them), when it holds at least `reject_failed_golden` failed golden items, or when
fewer than `min_agreement` of its real items agree with the aggregate; it is accepted once its
real items are aggregated and no rule rejects it, or after `auto_accept_seconds` whatever the
state of aggregation. Requesters set the rules per job within the operator's limits.

A decision is written once (`pool.decisions.record`) and its money moves under a unique key per
assignment, so a decision job run twice, or two at once, pays once. Each batch reads first, then
locks the money accounts it will move, in the ledger's one order (`ledger.lock_balances`), and
writes its decisions and movements in a few statements (`ledger.post_all`): every lease of the job
waits on those rows while a batch holds them.

The reasons are shown to workers: they never count or name golden items (a task's golden share
must not be readable from them), so they say "quality checks" and "consensus", not figures.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlmodel import Session

from marketplace.errors import Invalid
from marketplace.models import (
    Aggregate,
    Answer,
    Assignment,
    AssignmentState,
    Decision,
    Item,
    Job,
    JobState,
    LedgerKind,
    WorkerQuality,
    utcnow,
)
from marketplace.pool import decisions
from marketplace.services import budget, ledger, pricing, scoring
from marketplace.services.ledger import budget_account, holds_account, requester_account, worker_account
from marketplace.settings import AcceptanceRules, Bonus, Pricing

# Tasks decided per transaction: a batch holds the job's budget and holds rows, which every
# lease of the job also updates, while it writes its decisions and movements (a few statements
# whatever its size; `bench.acceptance` measures how long).
BATCH = 50
DECISION_LOCK = 7_301  # advisory lock (space, job id modulo 2**31 - 1): one decision run per job
ACCEPTED = "accepted"
AGREES = "accepted: agrees with the consensus"
LATE = "auto-accepted: not aggregated in time"
DROPPED = "rejected: banned for cause, the worker's answers were dropped"
FAILED_CHECKS = "rejected: did not pass the job's quality checks"
FAR = "rejected: far from the consensus"


@dataclass(frozen=True)
class Limits:
    """The operator's bounds on a requester's rules (config: ACCEPTANCE_*, AUTO_ACCEPT_*)."""

    max_min_agreement: float = 0.8
    min_reject_failed_golden: int = 1
    auto_accept_max_seconds: int = 14 * 24 * 3600
    auto_accept_default_seconds: int = 3 * 24 * 3600

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        return cls(
            max_min_agreement=float(config["ACCEPTANCE_MAX_MIN_AGREEMENT"]),
            min_reject_failed_golden=int(config["ACCEPTANCE_MIN_REJECT_FAILED_GOLDEN"]),
            auto_accept_max_seconds=int(config["AUTO_ACCEPT_MAX_SECONDS"]),
            auto_accept_default_seconds=int(config["AUTO_ACCEPT_DEFAULT_SECONDS"]),
        )


def check_limits(rules: AcceptanceRules, limits: Limits) -> None:
    if rules.min_agreement is not None and rules.min_agreement > limits.max_min_agreement:
        raise Invalid("acceptance.min_agreement", f"at most {limits.max_min_agreement} (the operator's limit)")
    failed = rules.reject_failed_golden
    if failed is not None and failed < limits.min_reject_failed_golden:
        raise Invalid("acceptance.reject_failed_golden", f"at least {limits.min_reject_failed_golden}")
    delay = rules.auto_accept_seconds
    if delay is not None and delay > limits.auto_accept_max_seconds:
        raise Invalid("acceptance.auto_accept_seconds", f"at most {limits.auto_accept_max_seconds} (workers wait)")


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str


def decide_job(
    session: Session, job_id: int, limits: Limits, now: datetime | None = None, only_overdue: bool = False
) -> dict[str, int]:
    """Decide every submitted, undecided task of the job that can be decided now (with
    `only_overdue`: those past the auto-accept delay, the sweep's share)."""
    now = now or utcnow()
    job = session.get(Job, job_id)
    counts = {"accepted": 0, "rejected": 0, "waiting": 0}
    if job is None:
        return counts
    rules = AcceptanceRules.load(job.acceptance)
    scoring.score_pending(session, job_id)  # failed golden annotation answers are known by their score
    delay = timedelta(seconds=rules.auto_accept_seconds or limits.auto_accept_default_seconds)
    after = 0
    latest = now - delay if only_overdue else now + timedelta(days=36500)
    while True:
        if not _deciding_alone(session, job_id):
            break  # another run decides this job now: it goes on where this one stops
        tasks = _undecided(session, job_id, after, latest)
        if not tasks:
            break
        ids = [int(t.id or 0) for t in tasks]
        after = ids[-1]
        answers = _answers_of(session, job_id, ids)
        agreeing = _agreement(session, job, answers)
        verdicts: list[tuple[Assignment, Verdict]] = []
        for task in tasks:
            verdict = judge(rules, answers.get(task.id, []), agreeing, overdue=task.finished_at + delay <= now)
            if verdict is None:
                counts["waiting"] += 1
            else:
                verdicts.append((task, verdict))
        for decision in settle(session, job, verdicts, answers, now):
            counts[decision] += 1
        session.commit()
    return counts


def _undecided(session: Session, job_id: int, after: int, latest: datetime) -> list[Assignment]:
    """The next batch of the job's submitted, undecided tasks after assignment `after` that
    finished by `latest`, in id order."""
    rows = session.execute(
        select(Assignment)
        .where(
            Assignment.job_id == job_id,
            Assignment.state == AssignmentState.SUBMITTED,
            Assignment.decision.is_(None),
            Assignment.id > after,
            Assignment.finished_at <= latest,
        )
        .order_by(Assignment.id)
        .limit(BATCH)
    )
    return list(rows.scalars().all())


def _deciding_alone(session: Session, job_id: int) -> bool:
    """Take the job's decision lock for this batch's transaction, without waiting: False when
    another decision run holds it. Runs come from each aggregation and from the sweep (which
    also catches up after a run that died), and a big job's decisions take a while; without it
    they would pile up on the job's money rows, each deciding what another decides. A killed
    run's lock goes with its connection."""
    statement = text("SELECT pg_try_advisory_xact_lock(:space, CAST(:job % 2147483647 AS INTEGER))")
    return bool(session.execute(statement, {"space": DECISION_LOCK, "job": job_id}).scalar())


def _answers_of(session: Session, job_id: int, assignment_ids: list[int]) -> dict[int, list[Answer]]:
    rows = session.execute(
        select(Answer).where(Answer.job_id == job_id, Answer.assignment_id.in_(assignment_ids))
    ).scalars()
    grouped: dict[int, list[Answer]] = defaultdict(list)
    for answer in rows:
        grouped[answer.assignment_id].append(answer)
    return grouped


def _agreement(session: Session, job: Job, answers: dict[int, list[Answer]]) -> dict[tuple[int, int], bool]:
    """Per real answer whose item is aggregated (by worker and item): does it agree with the aggregate?
    A label when it is the aggregate's; an annotation answer when its score against the fused
    value reaches `scoring.PASS_SCORE`."""
    real = [a for group in answers.values() for a in group if not a.is_golden]
    if not real:
        return {}
    rows = session.execute(
        select(Aggregate.item_id, Aggregate.label, Aggregate.value, Item.data)
        .join(Item, Item.id == Aggregate.item_id)
        .where(Aggregate.job_id == job.id, Aggregate.item_id.in_({a.item_id for a in real}))
    ).all()
    aggregates = {row.item_id: row for row in rows}
    agreeing: dict[tuple[int, int], bool] = {}
    for answer in real:
        aggregate = aggregates.get(answer.item_id)
        if aggregate is None:
            continue
        if answer.value is None or aggregate.value is None:
            agreeing[answer.worker_id, answer.item_id] = answer.label == aggregate.label
        else:
            fit = scoring.score(job.annotation, answer.value, aggregate.value, aggregate.data)
            agreeing[answer.worker_id, answer.item_id] = fit >= scoring.PASS_SCORE
    return agreeing


def judge(
    rules: AcceptanceRules, answers: list[Answer], agreeing: dict[tuple[int, int], bool], overdue: bool
) -> Verdict | None:
    """The verdict on one task, or None to wait for aggregation (`agreeing`: per worker and item
    aggregated, whether the answer agrees with the aggregate)."""
    if any(a.excluded for a in answers):
        return Verdict(Decision.REJECTED, DROPPED)
    failed = sum(1 for a in answers if a.is_golden and a.correct is False)
    limit = rules.reject_failed_golden
    if limit is not None and failed >= limit:
        return Verdict(Decision.REJECTED, FAILED_CHECKS)
    real = [a for a in answers if not a.is_golden]
    judged = [a for a in real if (a.worker_id, a.item_id) in agreeing]
    if len(judged) < len(real):
        return Verdict(Decision.ACCEPTED, LATE) if overdue else None
    floor = rules.min_agreement
    agreed = sum(1 for a in judged if agreeing[a.worker_id, a.item_id])
    if floor is not None and judged and agreed / len(judged) < floor:
        return Verdict(Decision.REJECTED, FAR)
    return Verdict(Decision.ACCEPTED, AGREES if judged else ACCEPTED)


def settle(
    session: Session,
    job: Job,
    verdicts: list[tuple[Assignment, Verdict]],
    answers: dict[int, list[Answer]],
    now: datetime,
) -> list[Decision]:
    """Record each decision once and move its money: pay (+ bonus) from the hold and return the
    rest, or return the whole hold; the decisions written (a task another run decided first is
    left out). The money rows are locked only now, after the reads, and the batch's writes are
    a few statements, so the job's leases wait on those rows as little as they can."""
    if not verdicts:
        return []
    _lock_money(session, job, [task for task, verdict in verdicts if verdict.decision == Decision.ACCEPTED])
    outcomes = _outcomes(session, job, verdicts, answers)
    written = decisions.record(session, [outcome for outcome, _ in outcomes], now)
    holds, budget_of_job = holds_account(job.id), budget_account(job.id)
    movements: list[ledger.Movement] = []
    for (task, _), (outcome, pay) in zip(verdicts, outcomes, strict=True):
        if outcome.assignment_id not in written:
            continue
        paid = outcome.paid_cents or 0
        if outcome.decision == Decision.ACCEPTED:
            worker = worker_account(task.worker_id)
            work, bonus = [(holds, worker, pay)], [(holds, worker, paid - pay)]
            movements.append(ledger.Movement(LedgerKind.WORK, work, f"work:{task.id}", job.id, task.id))
            movements.append(ledger.Movement(LedgerKind.BONUS, bonus, f"bonus:{task.id}", job.id, task.id))
        rest = [(holds, budget_of_job, task.hold_cents - paid)]
        movements.append(
            ledger.Movement(LedgerKind.RELEASE, rest, f"rest:{task.id}", job.id, task.id, memo=outcome.reason)
        )
    ledger.post_all(session, movements, currency=job.currency)
    if written and job.state == JobState.CANCELLED:
        budget.refund_rest(session, job)
    return [outcome.decision for outcome, _ in outcomes if outcome.assignment_id in written]


def _lock_money(session: Session, job: Job, paid: list[Assignment]) -> None:
    """Every balance row the batch may change, in the ledger's order, before the first move."""
    accounts = [budget_account(job.id), holds_account(job.id), *(worker_account(t.worker_id) for t in paid)]
    if job.state == JobState.CANCELLED:
        accounts.append(requester_account(job.requester_id))
    ledger.lock_balances(session, accounts)


def _outcomes(
    session: Session, job: Job, verdicts: list[tuple[Assignment, Verdict]], answers: dict[int, list[Answer]]
) -> list[tuple[decisions.Outcome, int]]:
    """Each task's decision with what it pays, and the work part of that (the rest is bonus):
    its items' prices (an annotation item's by the objects drawn on it), and the job's bonus when
    the worker's golden accuracy on the job clears the bar."""
    kind, prices, bonus_rule = (
        job.annotation["type"],
        Pricing.load(job.pricing, job.reward_cents),
        Bonus.load(job.bonus),
    )
    accepted = {task.worker_id for task, verdict in verdicts if verdict.decision == Decision.ACCEPTED}
    accuracy = _golden_accuracies(session, job.id, accepted) if bonus_rule and accepted else {}
    outcomes = []
    for task, verdict in verdicts:
        work, paid = 0, None
        if verdict.decision == Decision.ACCEPTED:
            entries = answers.get(task.id, [])
            work = sum(prices.item_pay(kind, 1 if a.value is None else pricing.objects_in(a.value)) for a in entries)
            bonus = len(entries) * bonus_rule.per_item(accuracy.get(task.worker_id)) if bonus_rule else 0
            paid = work + bonus
        outcomes.append((decisions.Outcome(int(task.id or 0), verdict.decision, verdict.reason, paid), work))
    return outcomes


def _golden_accuracies(session: Session, job_id: int, worker_ids: set[int]) -> dict[int, float | None]:
    rows = session.execute(
        select(WorkerQuality.worker_id, WorkerQuality.golden_accuracy).where(
            WorkerQuality.job_id == job_id, WorkerQuality.worker_id.in_(worker_ids)
        )
    ).all()
    return {row.worker_id: row.golden_accuracy for row in rows}


def decisions_due(session: Session, job_id: int, aggregated_up_to: int) -> bool:
    """Whether the job has submitted tasks nobody decided although the aggregation up to answer
    `aggregated_up_to` saw all their answers: the decision step after that aggregation did not
    run or did not finish (a worker killed mid-acceptance). The sweep then decides them, instead
    of leaving their money held until auto-accept, days later."""
    statement = text(
        "SELECT EXISTS (SELECT 1 FROM assignment a"
        " WHERE a.job_id = :job AND a.state = 'submitted' AND a.decision IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM answer x"
        "  WHERE x.job_id = :job AND x.id > :last AND x.assignment_id = a.id))"
    )
    return bool(session.execute(statement, {"job": job_id, "last": aggregated_up_to}).scalar_one())


def decide_overdue(session: Session, limits: Limits, now: datetime | None = None) -> dict[int, dict[str, int]]:
    """The sweep's share: auto-accept work nobody decided within its job's delay."""
    now = now or utcnow()
    job_ids = (
        session.execute(
            select(Assignment.job_id)
            .where(Assignment.state == AssignmentState.SUBMITTED, Assignment.decision.is_(None))
            .distinct()
        )
        .scalars()
        .all()
    )
    return {job_id: decide_job(session, job_id, limits, now, only_overdue=True) for job_id in job_ids}


def recent_decisions(session: Session, worker_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """A worker's latest decided tasks with the reasons, newest first."""
    rows = session.execute(
        select(Assignment)
        .where(Assignment.worker_id == worker_id, Assignment.decision.is_not(None))
        .order_by(Assignment.decided_at.desc(), Assignment.id.desc())
        .limit(limit)
    ).scalars()
    return [
        {
            "assignment_id": a.id,
            "job_id": a.job_id,
            "decision": a.decision,
            "reason": a.decision_reason,
            "paid_cents": a.paid_cents,
            "decided_at": a.decided_at,
        }
        for a in rows
    ]
