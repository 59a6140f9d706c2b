"""Worker quality over time: golden accuracy and agreement per day, with confidence intervals.

Computed from stored answers (golden ones carry `correct`, annotation ones also a `score`) and
the latest aggregates, so it needs no state of its own. Requesters see only answers on their
own jobs.

Golden accuracy is the mean golden score: 1 or 0 for a label, a score in [0, 1] for an
annotation answer (`services/scoring.py`). `golden_correct` counts the golden answers that are
right (a label) or pass (a score of at least 0.5).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Float, Integer, and_, case, func, select
from sqlmodel import Session

from marketplace.models import Account, Aggregate, Answer, Job

Z95 = 1.96


def wilson(correct: int, seen: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval: honest bounds for small counts (1 of 1 is not 'certainly 100%')."""
    if seen == 0:
        return None, None
    p = correct / seen
    denominator = 1 + z * z / seen
    centre = (p + z * z / (2 * seen)) / denominator
    margin = z * math.sqrt(p * (1 - p) / seen + z * z / (4 * seen * seen)) / denominator
    return round(max(0.0, centre - margin), 4), round(min(1.0, centre + margin), 4)


def golden_scored() -> Any:
    """A golden answer with its score known (annotation answers are scored after the submit)."""
    return and_(Answer.is_golden.is_(True), Answer.correct.is_not(None))


def golden_credit() -> Any:
    """What a golden answer adds to the golden accuracy: its score, or 1 for a right label."""
    return func.coalesce(Answer.score, case((Answer.correct.is_(True), 1.0), else_=0.0))


def raw_share(correct: float, seen: int) -> float | None:
    """What `golden_accuracy` means everywhere: the share right, 4 of 4 is 1.0 (the smoothed
    estimate has a field of its own, `golden_accuracy_smoothed`)."""
    return round(correct / seen, 4) if seen else None


def _scope(query: Any, requester_id: int | None, job_id: int | None) -> Any:
    if job_id is not None:
        query = query.where(Answer.job_id == job_id)
    if requester_id is not None:
        owned = select(Job.id).where(Job.requester_id == requester_id)
        query = query.where(Answer.job_id.in_(owned))
    return query


def _figures(
    golden_seen: int, golden_correct: int, credit: float, answers: int, agreed: int, compared: int
) -> dict[str, Any]:
    low, high = wilson(credit, golden_seen)
    return {
        "answers": answers,
        "golden_seen": golden_seen,
        "golden_correct": golden_correct,
        "golden_accuracy": raw_share(credit, golden_seen),
        "golden_accuracy_smoothed": round((credit + 1) / (golden_seen + 2), 4) if golden_seen else None,
        "golden_ci_low": low,
        "golden_ci_high": high,
        "agreement": round(agreed / compared, 4) if compared else None,
    }


def _columns() -> tuple[Any, ...]:
    golden = golden_scored()
    agree = and_(Answer.is_golden.is_(False), Aggregate.label.is_not(None))
    return (
        func.sum(case((golden, 1), else_=0)).cast(Integer),
        func.sum(case((and_(golden, Answer.correct.is_(True)), 1), else_=0)).cast(Integer),
        func.sum(case((golden, golden_credit()), else_=0.0)).cast(Float),
        func.count(),
        func.sum(case((and_(agree, Aggregate.label == Answer.label), 1), else_=0)).cast(Integer),
        func.sum(case((agree, 1), else_=0)).cast(Integer),
    )


def _joined(query: Any) -> Any:
    return query.select_from(Answer).outerjoin(
        Aggregate, and_(Aggregate.job_id == Answer.job_id, Aggregate.item_id == Answer.item_id)
    )


def daily(
    session: Session, worker_id: int, requester_id: int | None = None, job_id: int | None = None
) -> list[dict[str, Any]]:
    """One row per day the worker answered: drift shows as a trend in these rows."""
    day = func.date(Answer.created_at)
    query = _joined(select(day, *_columns())).where(Answer.worker_id == worker_id, Answer.excluded.is_(False))
    rows = session.execute(_scope(query, requester_id, job_id).group_by(day).order_by(day)).all()
    return [{"day": str(r[0]), **_figures(*r[1:])} for r in rows]


SORTABLE = ("golden_accuracy", "golden_accuracy_smoothed", "golden_ci_low", "agreement", "answers")


def ranking(
    session: Session, sort: str, limit: int, requester_id: int | None = None, job_id: int | None = None
) -> list[dict[str, Any]]:
    """Workers by a quality figure, worst first, each with its confidence interval."""
    query = _joined(select(Answer.worker_id, *_columns())).where(Answer.excluded.is_(False))
    rows = session.execute(_scope(query, requester_id, job_id).group_by(Answer.worker_id)).all()
    status: dict[int, str] = dict(
        session.execute(select(Account.id, Account.status).where(Account.id.in_([r[0] for r in rows]))).tuples().all()
    )
    workers = [{"worker_id": r[0], "status": status.get(r[0]), **_figures(*r[1:])} for r in rows]
    workers.sort(key=lambda w: (w[sort] is None, w[sort] if w[sort] is not None else 0.0, w["worker_id"]))
    return workers[:limit]


# What a worker sees of its own golden record: one figure over all its jobs, from the golden
# answers of whole days that ended at least a day ago, once there are enough of them. Per-job
# counts updated after each aggregation let a worker tell which of its tasks held golden items
# (the count moves right after one); a figure that moves once a day, over every job, does not.
SETTLED_DAYS = 1
SETTLED_MIN_COUNT = 20


def settled_golden(session: Session, worker_id: int, now: datetime) -> dict[str, Any]:
    """The worker's own golden accuracy, as of the start of the day before `now` (UTC)."""
    as_of = datetime.combine((now - timedelta(days=SETTLED_DAYS)).date(), time.min, tzinfo=UTC)
    seen, correct = session.execute(
        select(func.count(), func.coalesce(func.sum(case((Answer.correct.is_(True), 1), else_=0)), 0)).where(
            Answer.worker_id == worker_id, Answer.is_golden.is_(True), Answer.created_at < as_of
        )
    ).one()
    shown = seen >= SETTLED_MIN_COUNT
    return {
        "accuracy": raw_share(int(correct), int(seen)) if shown else None,
        "checked": int(seen) if shown else None,
        "as_of": as_of,
        "min_count": SETTLED_MIN_COUNT,
    }
