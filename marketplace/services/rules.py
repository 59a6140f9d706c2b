"""Quality rules: a condition over a worker's record on a job, and an action.

The default rule reads the aggregation model: "answers_at_chance" scores every answer of the
worker against the aggregate's posterior (golden answers against their known label) and fires
when Wald's sequential test finds the answers 1000 times likelier from a worker answering at
random than from one right with probability `threshold` (`aggregation.spam`). A uniform
spammer on 3 labels is stopped after about 30 answers, one on 4 labels after about 20; an
honest worker of accuracy 0.7 or better is stopped with probability under 1/1000.

Conditions fire on confidence, not on point estimates: "golden accuracy below 0.7" fires
when the upper end of a Wilson interval at z = 3.5 is below 0.7. The rule is re-checked
after every golden answer, so the interval must be wide enough for repeated looks: at
z = 1.96, 1.7% of simulated honest workers of accuracy 0.8 were banned within 300 golden
answers; at 3.5 none of 3,000 were, while a uniform spammer on 4 labels was stopped after 13
golden answers on average and 51 at most (tests/test_rules.py checks the bounds).
Every firing is in the audit log with its figures.

Golden accuracy is the mean golden score (`services/scoring.py`): for annotation jobs (label
sets, boxes, polygons, keypoints) a score in [0, 1], and the default rule bans below 0.5 rather
than 0.7. Measured with the rule as it runs (z = 3.5, after every golden answer): on the
pedestrian boxes (7 workers a frame, 41 workers, expert gold) a worker's mean score is 0.57 to
0.85 for all but a few; at 0.5 the rule stops the two whose means are 0.15 and 0.31 (after 28
and 29 golden answers) and no other; a worker drawing 1 to 3 random boxes is stopped after 13
golden answers (14 at most, 200 runs), as fast as a classification spammer. At 0.7 it would
ban most honest box workers in the long run.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from aggregation.spam import BOUND, at_chance
from marketplace.models import (
    Account,
    Answer,
    Assignment,
    AssignmentItem,
    AuditEvent,
    Item,
    Job,
    QualityRule,
    ReviewFlag,
    Role,
    WorkerBlock,
    utcnow,
)
from marketplace.services import scoring
from marketplace.services.bans import ban_worker
from marketplace.services.bulk import copy_answers
from marketplace.services.quality import golden_credit, golden_scored, wilson
from marketplace.settings import CLASSIFICATION

RULE_Z = 3.5

CONDITIONS = ("answers_at_chance", "golden_accuracy_below", "agreement_below", "too_fast", "skip_share_above")
ACTIONS = ("ban_job", "ban_everywhere", "cooldown", "flag")
# Used for a job with no rules of its own when no operator has set global ones.
DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {
        "condition": {"type": "answers_at_chance", "threshold": 0.7, "min_count": 10},
        "action": {"type": "ban_job", "exclude_answers": True},
    },
    {
        "condition": {"type": "golden_accuracy_below", "threshold": 0.7, "min_count": 5},
        "action": {"type": "ban_job", "exclude_answers": True},
    },
)
# The same for annotation jobs, whose golden scores are graded, not right or wrong (see above).
DEFAULT_ANNOTATION_RULES: tuple[dict[str, Any], ...] = (
    {
        "condition": {"type": "golden_accuracy_below", "threshold": 0.5, "min_count": 5},
        "action": {"type": "ban_job", "exclude_answers": True},
    },
)


def rules_for(session: Session, job_id: int) -> list[tuple[int | None, dict[str, Any], dict[str, Any]]]:
    """The rules in force on the job: its own and the global ones (or the defaults). A rule that
    an operator did not write acts on this job only: a requester's `ban_everywhere` (written
    before the API refused it) bans from the job."""
    rows = session.execute(
        select(QualityRule.id, QualityRule.condition, QualityRule.action, Account.role)
        .outerjoin(Account, Account.id == QualityRule.created_by)
        .where(QualityRule.enabled.is_(True), or_(QualityRule.job_id == job_id, QualityRule.job_id.is_(None)))
        .order_by(QualityRule.id)
    ).all()
    if rows:
        return [(r.id, r.condition, r.action if r.role == Role.OPERATOR else _within_job(r.action)) for r in rows]
    kind = session.execute(select(Job.annotation["type"].as_string()).where(Job.id == job_id)).scalar()
    defaults = DEFAULT_RULES if kind in (None, CLASSIFICATION) else DEFAULT_ANNOTATION_RULES
    return [(None, r["condition"], r["action"]) for r in defaults]


def _within_job(action: dict[str, Any]) -> dict[str, Any]:
    return {**action, "type": "ban_job"} if action["type"] == "ban_everywhere" else action


def worker_figures(session: Session, job_id: int, worker_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per worker, the record the conditions read: golden (the sum of golden scores as
    `golden_correct`), agreement, time per item, skips. One grouped query per figure for all
    the workers, not three per worker."""
    if not worker_ids:
        return {}
    golden = {
        int(worker): (int(seen), float(correct or 0))
        for worker, seen, correct in session.execute(
            select(Answer.worker_id, func.count(), func.sum(golden_credit()))
            .where(
                Answer.job_id == job_id,
                Answer.worker_id.in_(worker_ids),
                golden_scored(),
                Answer.excluded.is_(False),
            )
            .group_by(Answer.worker_id)
        )
    }
    agreement = scoring.agreement_with_aggregates(session, job_id, worker_ids)
    leases: dict[int, list[Any]] = defaultdict(list)
    for row in session.execute(
        select(
            Assignment.worker_id,
            Assignment.state,
            Assignment.created_at,
            Assignment.finished_at,
            func.count(AssignmentItem.id).label("entries"),
        )
        .join(AssignmentItem, AssignmentItem.assignment_id == Assignment.id)
        .where(Assignment.job_id == job_id, Assignment.worker_id.in_(worker_ids))
        .group_by(Assignment.id, Assignment.worker_id, Assignment.state, Assignment.created_at, Assignment.finished_at)
    ):
        leases[row.worker_id].append(row)
    figures: dict[int, dict[str, Any]] = {}
    for worker_id in worker_ids:
        seen, correct = golden.get(worker_id, (0, 0.0))
        compared, agreed = agreement.get(worker_id, (0, 0.0))
        mine = leases[worker_id]
        per_item = [
            (r.finished_at - r.created_at).total_seconds() / r.entries
            for r in mine
            if r.state == "submitted" and r.finished_at is not None
        ]
        finished = [r.state for r in mine if r.state in ("submitted", "skipped", "expired")]
        figures[worker_id] = {
            "golden_seen": seen,
            "golden_correct": round(correct, 4),
            "compared": compared,
            "agreed": int(agreed),
            "timed_tasks": len(per_item),
            "median_seconds_per_item": round(statistics.median(per_item), 3) if per_item else None,
            "finished_leases": len(finished),
            "skipped": finished.count("skipped"),
        }
    return figures


def workers_with_new_evidence(session: Session, job_id: int, since: int) -> tuple[int | None, list[int] | None]:
    """The last answer id after `since` (None: no new answer) and the workers to check again:
    every worker with an answer after `since`, and every worker who answered a real item that
    one of those answers is on. A worker's real answers are judged against the others' on the
    same item, which often come later: without the second group, that evidence would wait for
    the worker's next submit, and a spammer who had stopped working would not be looked at again
    until the next aggregation. `since` 0 (the mark lost): every worker (None)."""
    last = session.execute(select(func.max(Answer.id)).where(Answer.job_id == job_id, Answer.id > since)).scalar()
    if last is None or since == 0:
        return last, None
    new = and_(Answer.job_id == job_id, Answer.id > since, Answer.id <= last)
    other = aliased(Answer)
    fresh_items = select(other.item_id).where(
        other.job_id == job_id, other.id > since, other.id <= last, other.is_golden.is_(False)
    )
    beside = select(Answer.worker_id).where(Answer.job_id == job_id, Answer.item_id.in_(fresh_items))
    workers = set(session.execute(select(Answer.worker_id).where(new)).scalars())
    workers.update(session.execute(beside.distinct()).scalars())
    return last, sorted(workers)


def answer_count(session: Session, job_id: int) -> int:
    return int(session.execute(select(func.count()).where(Answer.job_id == job_id)).scalar_one())


def _answers_around(session: Session, job_id: int, worker_ids: list[int] | None) -> pd.DataFrame:
    """Included answers of the job on every item the workers answered (all of them: None)."""
    if worker_ids is None:
        return copy_answers(session, job_id)[0]
    included = and_(Answer.job_id == job_id, Answer.excluded.is_(False))
    query = select(Answer.item_id, Answer.worker_id, Answer.label).where(included)
    if worker_ids is not None:
        touched = select(Answer.item_id).where(included, Answer.worker_id.in_(worker_ids))
        query = query.where(Answer.item_id.in_(touched))
    rows = session.execute(query).all()
    return pd.DataFrame([(str(r[0]), str(r[1]), str(r[2])) for r in rows], columns=["task", "worker", "label"])


def chance_figures(
    session: Session, job_id: int, worker_ids: list[int] | None, honest: float
) -> dict[int, dict[str, Any]]:
    """Per worker (those given, or all): answers scored and the log-likelihood ratio of "at
    chance" over "right with probability `honest`" (`aggregation.spam`), from the included
    answers on every item the workers answered (everyone's, so each answer is judged by the
    others) and the golden labels. Only a classification job (a label list) has it."""
    labels = (session.get(Job, job_id).annotation or {}).get("labels") or []
    answers = _answers_around(session, job_id, worker_ids) if len(labels) >= 2 else pd.DataFrame()
    if answers.empty:
        return {}
    golden = session.execute(select(Item.id, Item.answer).where(Item.job_id == job_id, Item.is_golden.is_(True)))
    table = at_chance(answers, pd.Series({str(i): str(a) for i, a in golden}, dtype=object), honest, labels)
    wanted = None if worker_ids is None else {str(w) for w in worker_ids}
    return {
        int(worker): {"chance_scored": int(row.scored), "chance_log_ratio": round(float(row.log_ratio), 3)}
        for worker, row in table.iterrows()
        if wanted is None or worker in wanted
    }


def fires(condition: dict[str, Any], f: dict[str, Any]) -> bool:
    kind, minimum = condition["type"], condition.get("min_count", 10)
    if kind == "answers_at_chance":
        scored = f.get("chance_scored", 0)
        return scored >= minimum and f.get("chance_log_ratio", 0.0) >= BOUND
    if kind == "golden_accuracy_below":
        high = wilson(f["golden_correct"], f["golden_seen"], RULE_Z)[1]
        return f["golden_seen"] >= minimum and high is not None and high < condition["threshold"]
    if kind == "agreement_below":
        high = wilson(f["agreed"], f["compared"], RULE_Z)[1]
        return f["compared"] >= minimum and high is not None and high < condition["threshold"]
    if kind == "too_fast":
        median = f["median_seconds_per_item"]
        return f["timed_tasks"] >= minimum and median is not None and median < condition["seconds_per_item"]
    if kind == "skip_share_above":
        low = wilson(f["skipped"], f["finished_leases"], RULE_Z)[0]
        return f["finished_leases"] >= minimum and low is not None and low > condition["threshold"]
    raise ValueError(f"unknown condition {kind!r}")


def _already_acted(session: Session, job_id: int, worker_id: int, action: dict[str, Any]) -> bool:
    status = session.execute(select(Account.status).where(Account.id == worker_id)).scalar_one()
    if status != "active":
        return True
    now = utcnow()
    blocked = session.execute(
        select(WorkerBlock.id).where(
            WorkerBlock.worker_id == worker_id,
            or_(WorkerBlock.job_id == job_id, WorkerBlock.job_id.is_(None)),
            or_(WorkerBlock.until.is_(None), WorkerBlock.until > now),
        )
    ).first()
    if blocked is not None:
        return True
    if action["type"] == "flag":
        flagged = select(ReviewFlag.id).where(ReviewFlag.worker_id == worker_id, ReviewFlag.job_id == job_id)
        return session.execute(flagged.where(ReviewFlag.resolved.is_(False))).first() is not None
    return False


def apply_rules(session: Session, job_id: int, worker_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Evaluate the job's rules for its workers (or the given ones) and act; commits. Golden
    annotation answers not scored yet are scored first.

    Each action commits on its own: a ban locks the worker's account, then the balance rows
    of the jobs whose leases it revokes, the order a lease takes them in. A second ban in the
    same transaction would lock an account while holding balance rows, and deadlock with that
    worker's lease (found with two RQ workers beside the API: `bench/capacity.py`)."""
    scoring.score_pending(session, job_id)
    subset = worker_ids
    if worker_ids is None:
        worker_ids = list(session.execute(select(Answer.worker_id).where(Answer.job_id == job_id).distinct()).scalars())
    fired: list[dict[str, Any]] = []
    rules = rules_for(session, job_id)
    chance = {
        threshold: chance_figures(session, job_id, subset, threshold)
        for threshold in {c["threshold"] for _, c, _ in rules if c["type"] == "answers_at_chance"}
    }
    records = worker_figures(session, job_id, sorted(worker_ids))
    for worker_id in sorted(worker_ids):
        base = records[worker_id]
        for rule_id, condition, action in rules:
            figures = base
            if condition["type"] == "answers_at_chance":
                figures = {**base, **chance[condition["threshold"]].get(worker_id, {})}
            if fires(condition, figures) and not _already_acted(session, job_id, worker_id, action):
                fired.append(_act(session, job_id, worker_id, rule_id, condition, action, figures))
                session.commit()
                break
    session.commit()
    return fired


def _act(
    session: Session,
    job_id: int,
    worker_id: int,
    rule_id: int | None,
    condition: dict[str, Any],
    action: dict[str, Any],
    figures: dict[str, Any],
) -> dict[str, Any]:
    reason = f"rule {rule_id or 'default'}: {condition['type']} {_describe(condition)}"
    kind, exclude = action["type"], bool(action.get("exclude_answers", False))
    evidence = {"condition": condition, **figures}
    if kind == "flag":
        session.add(ReviewFlag(worker_id=worker_id, job_id=job_id, rule_id=rule_id, figures=evidence))
        session.add(
            AuditEvent(
                action="flag",
                subject_type="worker",
                subject_id=worker_id,
                reason=reason,
                details={"job_id": job_id, "rule_id": rule_id, "figures": evidence},
            )
        )
        session.flush()
        return {"worker_id": worker_id, "action": kind, "reason": reason}
    until = utcnow() + timedelta(seconds=int(action["cooldown_seconds"])) if kind == "cooldown" else None
    scope_job = None if kind == "ban_everywhere" else job_id
    result = ban_worker(
        session,
        worker_id,
        None,
        reason,
        exclude,
        job_id=scope_job,
        until=until,
        rule_id=rule_id,
        figures=evidence,
        commit=False,
    )
    return {"worker_id": worker_id, "action": kind, "reason": reason, "jobs_to_aggregate": result["jobs_to_aggregate"]}


def _describe(condition: dict[str, Any]) -> str:
    limit = condition.get("threshold", condition.get("seconds_per_item"))
    return f"{limit} after at least {condition.get('min_count', 10)}"
