"""The hot path's first half: lease the next task, and put expired leases back.

Free work is the `slot` table; a lease deletes the slots it takes (PostgreSQL: picked with
`FOR UPDATE SKIP LOCKED`, so concurrent leases never wait on each other and never take the
same slot), so what a lease scans stays proportional to what it takes. The worker's row is
locked first: one worker's leases run one at a time, which keeps "never the same item twice"
from racing with itself, and the account's status is read under that lock.

Workers see per-task item references (the `assignment_item` id), never item ids, so
nothing about an item, golden or not, can be read from its id.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, insert, select, update
from sqlmodel import Session

from marketplace.db import is_postgres
from marketplace.errors import Forbidden, NotFound
from marketplace.models import Account, Assignment, AssignmentItem, Item, Job, Slot, utcnow
from marketplace.services import pool_pg

# A submit that arrived before its deadline may still be in flight for this long.
EXPIRY_GRACE = timedelta(seconds=60)
_GOLDEN_CACHE_SECONDS = 30.0
_golden_ids: dict[tuple[str, int], tuple[float, list[int]]] = {}
RECLAIM_EVERY_SECONDS = 5.0
_last_reclaim: dict[tuple[str, int], float] = {}
_rng = random.SystemRandom()


@dataclass(frozen=True)
class LeasedTask:
    id: int
    state: str
    expires_at: datetime
    items: list[dict[str, Any]]
    job: dict[str, Any]


@dataclass(frozen=True)
class JobView:
    """The job fields a lease needs, read in the lease's own transaction."""

    id: int
    state: str
    title: str
    instructions: str
    annotation: dict[str, Any]
    items_per_task: int
    golden_ratio: float
    lease_seconds: int


def lease_task(
    session: Session, worker_id: int, job_id: int | None = None, now: datetime | None = None
) -> LeasedTask | None:
    """Lease the next task for a worker, or None when there is no work for it."""
    now = now or utcnow()
    pg = is_postgres(session)
    status, jobs = _worker_and_jobs(session, worker_id, job_id, pg)
    if status != "active":
        raise Forbidden("this account cannot take work at the moment; contact support")
    for job in jobs:
        _reclaim_now_and_then(session, job.id, now)
        task = _lease_from_job(session, job, worker_id, now, pg)
        if task is not None:
            session.commit()
            return task
    session.commit()
    return None


def _worker_and_jobs(session: Session, worker_id: int, job_id: int | None, pg: bool) -> tuple[str, list[JobView]]:
    """Lock the worker's row (its leases run one at a time) and read the candidate jobs."""
    if pg:
        status, row = pool_pg.worker_and_job(session, worker_id, job_id)
        named = [JobView(*row)] if row is not None else []
    else:
        status = session.execute(select(Account.status).where(Account.id == worker_id)).scalar_one()
        query = select(*JOB_VIEW_COLUMNS).where(Job.id == job_id) if job_id is not None else None
        named = [JobView(*r) for r in session.execute(query).all()] if query is not None else []
    if job_id is not None:
        if not named:
            raise NotFound(f"job {job_id} not found")
        return status, [j for j in named if j.state == "running"]
    running = select(*JOB_VIEW_COLUMNS).where(Job.state == "running").order_by(Job.id).limit(20)
    return status, [JobView(*r) for r in session.execute(running).all()]


JOB_VIEW_COLUMNS = (
    Job.id,
    Job.state,
    Job.title,
    Job.instructions,
    Job.annotation,
    Job.items_per_task,
    Job.golden_ratio,
    Job.lease_seconds,
)


def _reclaim_now_and_then(session: Session, job_id: int, now: datetime) -> None:
    """Expire overdue leases of the job at most every few seconds per process.

    The RQ sweep does the same for every job; this keeps a deployment without a running
    worker from stalling on expired leases, without a query on every lease.
    """
    key = (str(session.get_bind().url), job_id)
    due = _last_reclaim.get(key, 0.0) + RECLAIM_EVERY_SECONDS
    if time.monotonic() >= due:
        _last_reclaim[key] = time.monotonic()
        reclaim_expired(session, job_id, now)


def _lease_from_job(session: Session, job: JobView, worker_id: int, now: datetime, pg: bool) -> LeasedTask | None:
    golden_wanted = _golden_count(job.items_per_task, job.golden_ratio)
    golden = _pick_golden(session, job.id, worker_id, golden_wanted, pg)
    wanted = job.items_per_task - len(golden)
    take = pool_pg.take_slots if pg else _take_slots
    real = take(session, job.id, worker_id, wanted)
    if not real and reclaim_expired(session, job.id, now):
        real = take(session, job.id, worker_id, wanted)  # the pool ran dry: overdue leases first
    if not real:
        return None  # no golden-only tasks: golden items ride along with real work
    entries: list[tuple[int, int | None]] = [(item_id, round_no) for item_id, round_no in real]
    entries += [(g, None) for g in golden]
    _rng.shuffle(entries)
    expires_at = now + timedelta(seconds=job.lease_seconds)
    if pg:
        assignment_id, items = pool_pg.create_assignment(session, job.id, worker_id, entries, now, expires_at)
    else:
        assignment_id, items = _create_assignment(session, job.id, worker_id, entries, now, expires_at)
    return LeasedTask(
        id=assignment_id,
        state="leased",
        expires_at=expires_at,
        items=items,
        job={"id": job.id, "title": job.title, "instructions": job.instructions, "annotation": job.annotation},
    )


def _create_assignment(
    session: Session,
    job_id: int,
    worker_id: int,
    entries: list[tuple[int, int | None]],
    now: datetime,
    expires_at: datetime,
) -> tuple[int, list[dict[str, Any]]]:
    assignment_id = session.execute(
        insert(Assignment)
        .values(job_id=job_id, worker_id=worker_id, state="leased", created_at=now, expires_at=expires_at)
        .returning(Assignment.id)
    ).scalar_one()
    refs = session.execute(
        insert(AssignmentItem).returning(AssignmentItem.id, AssignmentItem.item_id, sort_by_parameter_order=True),
        [
            {
                "assignment_id": assignment_id,
                "job_id": job_id,
                "worker_id": worker_id,
                "item_id": item_id,
                "round": round_no,
                "position": position,
            }
            for position, (item_id, round_no) in enumerate(entries)
        ],
    ).all()
    data: dict[int, Any] = dict(
        session.execute(select(Item.id, Item.data).where(Item.job_id == job_id, Item.id.in_([e[0] for e in entries])))
        .tuples()
        .all()
    )
    return assignment_id, [{"id": ref.id, "data": data[ref.item_id]} for ref in refs]


def _golden_count(items_per_task: int, ratio: float) -> int:
    """Golden items in one task: the ratio in expectation, at least one real item per task."""
    expected = items_per_task * ratio
    count = int(expected) + (1 if _rng.random() < expected - int(expected) else 0)
    return min(count, items_per_task - 1)


def _take_slots(session: Session, job_id: int, worker_id: int, wanted: int) -> list[tuple[int, int]]:
    """Take up to `wanted` slots of distinct items this worker has never seen."""
    seen = exists().where(
        AssignmentItem.job_id == job_id,
        AssignmentItem.worker_id == worker_id,
        AssignmentItem.item_id == Slot.item_id,
    )
    candidates = session.execute(
        select(Slot.id, Slot.item_id, Slot.round)
        .where(Slot.job_id == job_id, ~seen)
        .order_by(Slot.round, Slot.item_id)
        .limit(wanted * 2)
        .with_for_update(skip_locked=True)
    ).all()
    chosen: dict[int, tuple[int, int]] = {}
    for slot_id, item_id, round_no in candidates:
        if item_id not in chosen and len(chosen) < wanted:
            chosen[item_id] = (slot_id, round_no)
    if chosen:
        session.execute(delete(Slot).where(Slot.id.in_([s for s, _ in chosen.values()])))
    return [(item_id, round_no) for item_id, (_, round_no) in chosen.items()]


def _pick_golden(session: Session, job_id: int, worker_id: int, wanted: int, pg: bool) -> list[int]:
    """Random golden items this worker has not seen, without sorting the golden set."""
    if wanted <= 0:
        return []
    pool = _golden_pool(session, job_id)
    if not pool:
        return []
    candidates = _rng.sample(pool, min(len(pool), wanted * 8))
    if pg:
        seen = pool_pg.golden_seen(session, job_id, worker_id, candidates)
        return [c for c in candidates if c not in seen][:wanted]
    seen = set(
        session.execute(
            select(AssignmentItem.item_id).where(
                AssignmentItem.job_id == job_id,
                AssignmentItem.worker_id == worker_id,
                AssignmentItem.item_id.in_(candidates),
            )
        ).scalars()
    )
    return [c for c in candidates if c not in seen][:wanted]


def _golden_pool(session: Session, job_id: int) -> list[int]:
    now = time.monotonic()
    key = (str(session.get_bind().url), job_id)
    hit = _golden_ids.get(key)
    if hit and hit[0] > now:
        return hit[1]
    ids = list(session.execute(select(Item.id).where(Item.job_id == job_id, Item.is_golden.is_(True))).scalars())
    _golden_ids[key] = (now + _GOLDEN_CACHE_SECONDS, ids)
    return ids


def reclaim_expired(session: Session, job_id: int, now: datetime, limit: int = 200) -> int:
    """Expire leases past their deadline (plus grace) and put their slots back in the pool."""
    due = (
        session.execute(
            select(Assignment.id)
            .where(
                Assignment.job_id == job_id,
                Assignment.state == "leased",
                Assignment.expires_at < now - EXPIRY_GRACE,
            )
            .order_by(Assignment.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    if not due:
        return 0
    release_assignments(session, job_id, list(due), "expired", now)
    return len(due)


def release_assignments(session: Session, job_id: int, assignment_ids: list[int], state: str, now: datetime) -> None:
    """End open leases (expired, skipped, revoked) and return their real slots to the pool."""
    session.execute(
        update(Assignment)
        .where(Assignment.id.in_(assignment_ids), Assignment.state == "leased")
        .values(state=state, finished_at=now)
    )
    source = select(AssignmentItem.job_id, AssignmentItem.item_id, AssignmentItem.round).where(
        and_(
            AssignmentItem.job_id == job_id,
            AssignmentItem.assignment_id.in_(assignment_ids),
            AssignmentItem.round.is_not(None),
        )
    )
    session.execute(insert(Slot).from_select(["job_id", "item_id", "round"], source))
