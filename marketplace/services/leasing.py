"""The hot path's first half: lease the next task, and put expired leases back.

Free work is the `slot` table; a lease deletes the slots it takes (PostgreSQL: picked with
`FOR UPDATE SKIP LOCKED`, so concurrent leases never wait on each other and never take the
same slot), so what a lease scans stays proportional to what it takes. The worker's row is
locked first: one worker's leases run one at a time, which keeps "never the same item twice"
from racing with itself, and the account's status is read under that lock.

Workers see per-task item references (the `assignment_item` id), never item ids, so
nothing about an item, golden or not, can be read from its id.

A job that asks for a qualification gives a worker who has not passed it a test first (see
`services/qualification.py`); on PostgreSQL the lease statement gives real work only to
workers who passed, and the rare rest (a test, a carry-over) runs in a Session.
"""

from __future__ import annotations

import math
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from flask import current_app, has_app_context
from sqlalchemy import Engine, and_, delete, exists, func, insert, or_, select, update
from sqlmodel import Session

from marketplace.db import is_postgres
from marketplace.errors import Forbidden, NotFound
from marketplace.models import Account, Assignment, AssignmentItem, Item, Job, Slot, WorkerBlock, utcnow
from marketplace.services import budget, pool_pg, qualification

# A submit that arrived before its deadline may still be in flight for this long.
EXPIRY_GRACE = timedelta(seconds=60)
_GOLDEN_CACHE_SECONDS = 30.0
_golden_ids: dict[tuple[str, int], tuple[float, list[int]]] = {}
RECLAIM_EVERY_SECONDS = 5.0
_last_reclaim: dict[tuple[str, int], float] = {}
_system_random = random.SystemRandom()
# PostgreSQL's lease: the job's (items per task, golden ratio) as last seen, to size the golden
# sample before the lease statement reads the job; a guess until then.
_job_shapes: dict[tuple[str, int], tuple[int, float]] = {}
_GOLDEN_GUESS = 5
_database_names: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()
_LEASE_ATTEMPTS = 8


def pool_random() -> random.Random:
    """The pool's randomness: golden draws, the order of a task's entries, the shuffle of an
    upload. The system's, unless the app's `POOL_SEED` is set: then one seeded stream per app,
    so a run whose leases reach one process one at a time repeats itself (`marketplace demo
    --seed`). For demos and tests only, never in production: a seed makes golden draws
    predictable."""
    seed = current_app.config.get("POOL_SEED") if has_app_context() else None
    if seed is None or seed == "":
        return _system_random
    return current_app.extensions.setdefault("pool_random", random.Random(int(seed)))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LeasedTask:
    id: int
    state: str
    expires_at: datetime
    items: list[dict[str, Any]]
    job: dict[str, Any]
    kind: str = "task"  # or "qualification": a test on golden items before real tasks


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
    item_hold_cents: int
    currency: str
    requester_id: int
    qualification: dict[str, Any] | None


def lease_task(
    session: Session, worker_id: int, job_id: int | None = None, now: datetime | None = None
) -> LeasedTask | None:
    """Lease the next task for a worker, or None when there is no work for it.

    On PostgreSQL this runs on a connection of its own from the engine's pool, outside the
    session (see `lease_task_pg`)."""
    if is_postgres(session):
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        return lease_task_pg(engine, worker_id, job_id, now)
    now = now or utcnow()
    status, jobs = _worker_and_jobs(session, worker_id, job_id)
    if status != "active":
        raise Forbidden("this account cannot take work at the moment; contact support")
    blocked = _blocked_jobs(session, worker_id, [j.id for j in jobs], now)
    for job in jobs:
        if job.id in blocked:
            continue
        _reclaim_now_and_then(session.get_bind(), job.id, now, session)
        task = _lease_from_job(session, job, worker_id, now)
        if task is not None:
            session.commit()
            return task
    session.commit()
    return None


def lease_task_pg(
    engine: Engine, worker_id: int, job_id: int | None = None, now: datetime | None = None
) -> LeasedTask | None:
    """The same on PostgreSQL: one statement per lease (`pool_pg.LEASE`) on a raw psycopg
    connection of the engine's pool, in autocommit; no Session."""
    now = now or utcnow()
    with pool_pg.autocommit(engine) as cur:
        if job_id is not None:
            jobs = [job_id]
        else:
            found = pool_pg.worker_and_running_jobs(cur, worker_id)
            if found is None or found[0] != "active":
                raise Forbidden("this account cannot take work at the moment; contact support")
            jobs = found[1]
        for job in jobs:
            task = _lease_from_job_pg(cur, engine, job, worker_id, now, named=job_id is not None)
            if task is not None:
                return task
    return None


def _lease_from_job_pg(
    cur: Any, engine: Engine, job_id: int, worker_id: int, now: datetime, named: bool
) -> LeasedTask | None:
    key = (_database(engine), job_id)
    pool = _golden_pool(engine, job_id, loader=lambda: pool_pg.golden_pool(cur, job_id))
    shape = _job_shapes.get(key)
    most = _golden_most(*shape) if shape is not None else _GOLDEN_GUESS
    rng = pool_random()
    sample = rng.sample(pool, min(len(pool), most * 8))
    draw, order = rng.random(), rng.randbytes(pool_pg.ORDER_BYTES)
    reclaimed = False
    for attempt in range(_LEASE_ATTEMPTS):
        try:
            row = pool_pg.lease(cur, job_id, worker_id, now, draw, sample, len(pool), order)
        except psycopg.errors.UniqueViolation as error:
            if error.diag.constraint_name != "uq_seen_once" or attempt == _LEASE_ATTEMPTS - 1:
                raise
            continue  # a lease of the same worker committed while this one waited for its row
        except psycopg.errors.CheckViolation as error:
            if error.diag.constraint_name != "ck_balance_not_negative":
                raise
            return None  # a concurrent lease took the budget's last task: no work (progress says so)
        if row is None or row[0] != "active":
            raise Forbidden("this account cannot take work at the moment; contact support")
        state, title, instructions, annotation, items_per_task, ratio, sample_ok = row[1:8]
        if state is None and named:
            raise NotFound(f"job {job_id} not found")
        if state != "running" or row[11]:
            return None  # not running, or the worker is kept from it: no work, nothing revealed
        if not row[13]:
            return None  # the budget cannot pay for another task (progress says so)
        if attempt == 0:  # a job that exists and runs: its overdue leases, now and then
            _reclaim_now_and_then(engine, job_id, now)
        if row[12] == "failed":
            return None  # failed the job's qualification: final until an operator resets it
        if row[12] not in ("none", "passed"):  # no qualification yet, or a test under way
            qualified, test = _qualification_pg(engine, job_id, worker_id, now)
            if qualified:
                continue  # carried over (or the job changed) just now: lease again
            return test
        _job_shapes[key] = (items_per_task, ratio)
        assignment_id, expires_at, items = row[8:11]
        if not sample_ok:  # drawn for other settings of the job: draw again for these
            sample = rng.sample(pool, min(len(pool), _golden_most(items_per_task, ratio) * 8))
            continue
        if assignment_id is None:
            if not reclaimed and _reclaim_apart(engine, job_id, now):
                reclaimed = True  # the pool ran dry: overdue leases first
                continue
            return None  # no golden-only tasks: golden items ride along with real work
        job = {"id": job_id, "title": title, "instructions": instructions, "annotation": annotation}
        return LeasedTask(id=assignment_id, state="leased", expires_at=expires_at, items=items, job=job)
    raise RuntimeError(f"no lease after {_LEASE_ATTEMPTS} attempts")


def _database(engine: Engine) -> str:
    """The engine's URL as a key of the per-process caches (rendering it costs ~30 us)."""
    name = _database_names.get(engine)
    if name is None:
        name = _database_names[engine] = str(engine.url)
    return name


def _golden_most(items_per_task: int, ratio: float) -> int:
    """The most golden items `_golden_count` can ask for."""
    return max(0, min(math.ceil(items_per_task * ratio), items_per_task - 1))


def _blocked_jobs(session: Session, worker_id: int, job_ids: list[int], now: datetime) -> set[int]:
    """Jobs the worker is kept from: a block on the job, on its requester, or everywhere."""
    if not job_ids:
        return set()
    active = or_(WorkerBlock.until.is_(None), WorkerBlock.until > now)
    scope = or_(
        WorkerBlock.job_id == Job.id,
        and_(
            WorkerBlock.job_id.is_(None),
            or_(WorkerBlock.requester_id.is_(None), WorkerBlock.requester_id == Job.requester_id),
        ),
    )
    rows = session.execute(
        select(Job.id).where(
            Job.id.in_(job_ids),
            exists().where(WorkerBlock.worker_id == worker_id, active, scope),
        )
    ).scalars()
    return set(rows)


def _worker_and_jobs(session: Session, worker_id: int, job_id: int | None) -> tuple[str, list[JobView]]:
    """Read the worker's status and the candidate jobs (SQLite: the transaction is the lock)."""
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
    Job.item_hold_cents,
    Job.currency,
    Job.requester_id,
    Job.qualification,
)


def _reclaim_now_and_then(engine: Any, job_id: int, now: datetime, session: Session | None = None) -> None:
    """Expire overdue leases of the job at most every few seconds per process.

    The RQ sweep does the same for every job; this keeps a deployment without a running
    worker from stalling on expired leases, without a query on every lease. Without a
    session (PostgreSQL's hot path) it runs in a transaction of its own.
    """
    key = (_database(engine), job_id)
    due = _last_reclaim.get(key, 0.0) + RECLAIM_EVERY_SECONDS
    if time.monotonic() >= due:
        _last_reclaim[key] = time.monotonic()
        if session is not None:
            reclaim_expired(session, job_id, now)
        else:
            _reclaim_apart(engine, job_id, now)


def _reclaim_apart(engine: Engine, job_id: int, now: datetime) -> int:
    """Reclaim in a session and transaction of its own (rare: see `_reclaim_now_and_then`)."""
    with Session(engine, expire_on_commit=False) as session:
        count = reclaim_expired(session, job_id, now)
        session.commit()
    return count


def _task(job: JobView, assignment_id: int, expires_at: datetime, items: list[dict[str, Any]]) -> LeasedTask:
    return LeasedTask(
        id=assignment_id,
        state="leased",
        expires_at=expires_at,
        items=items,
        job={"id": job.id, "title": job.title, "instructions": job.instructions, "annotation": job.annotation},
    )


def _entries(real: list[tuple[int, int]], golden: list[int]) -> list[tuple[int, int | None]]:
    entries: list[tuple[int, int | None]] = [(item_id, round_no) for item_id, round_no in real]
    entries += [(g, None) for g in golden]
    pool_random().shuffle(entries)
    return entries


def _lease_from_job(session: Session, job: JobView, worker_id: int, now: datetime) -> LeasedTask | None:
    if not budget.can_afford(session, job.id, job.items_per_task * job.item_hold_cents):
        return None  # the budget cannot pay for another task (progress says so)
    if job.qualification is not None:
        qualified, test = _qualification_gate(session, job, worker_id, now)
        if not qualified:
            return test
    golden_wanted = _golden_count(job.items_per_task, job.golden_ratio)
    golden = _pick_golden(session, job.id, worker_id, golden_wanted)
    wanted = job.items_per_task - len(golden)
    real = _take_slots(session, job.id, worker_id, wanted)
    if not real and reclaim_expired(session, job.id, now):
        real = _take_slots(session, job.id, worker_id, wanted)  # the pool ran dry: overdue leases first
    if not real:
        return None  # no golden-only tasks: golden items ride along with real work
    entries = _entries(real, golden)
    expires_at = now + timedelta(seconds=job.lease_seconds)
    assignment_id, items = _create_assignment(session, job, worker_id, entries, now, expires_at)
    return _task(job, assignment_id, expires_at, items)


def _qualification_gate(
    session: Session, job: JobView, worker_id: int, now: datetime
) -> tuple[bool, LeasedTask | None]:
    """For a job that asks for a qualification: (True, None) when the worker may have real
    tasks; otherwise (False, a test to take now, or None: nothing from this job now)."""
    assert job.qualification is not None
    stand = qualification.admission(session, job.id, job.requester_id, job.qualification, worker_id, now)
    if stand == qualification.QUALIFIED:
        return True, None
    return False, _lease_test(session, job, worker_id, now) if stand == qualification.TEST else None


def _lease_test(session: Session, job: JobView, worker_id: int, now: datetime) -> LeasedTask | None:
    """A qualification test: exactly `items` random golden items of the job that the worker has
    never seen, and nothing real; None when fewer are left for it, or when the job has no free
    work left to qualify for. Its entries are ordinary (round NULL), so `uq_seen_once` keeps
    these items from the worker from now on."""
    assert job.qualification is not None
    wanted = job.qualification["items"]
    if not session.execute(select(exists().where(Slot.job_id == job.id))).scalar_one():
        return None
    seen = exists().where(
        AssignmentItem.job_id == job.id,
        AssignmentItem.worker_id == worker_id,
        AssignmentItem.item_id == Item.id,
    )
    golden = list(
        session.execute(
            select(Item.id)
            .where(Item.job_id == job.id, Item.is_golden.is_(True), ~seen)
            .order_by(func.random())
            .limit(wanted)
        ).scalars()
    )
    if len(golden) < wanted or not budget.can_afford(session, job.id, wanted * job.item_hold_cents):
        return None  # tests are paid like tasks: they hold their worst case too
    expires_at = now + timedelta(seconds=job.lease_seconds)
    assignment_id, items = _create_assignment(session, job, worker_id, _entries([], golden), now, expires_at)
    qualification.start(session, job.id, worker_id, assignment_id, wanted, now)
    return replace(_task(job, assignment_id, expires_at, items), kind="qualification")


def _qualification_pg(engine: Engine, job_id: int, worker_id: int, now: datetime) -> tuple[bool, LeasedTask | None]:
    """PostgreSQL: `_qualification_gate` in a Session and transaction of its own (rare: a
    worker's first lease of a job that asks for a qualification, or one while its test is out).
    (True, None) also when the job changed since the lease statement read it: lease again."""
    with Session(engine, expire_on_commit=False) as session:
        found = session.execute(select(*JOB_VIEW_COLUMNS).where(Job.id == job_id)).one_or_none()
        job = JobView(*found) if found is not None else None
        if job is None or job.state != "running" or job.qualification is None:
            return True, None
        gate = _qualification_gate(session, job, worker_id, now)
        session.commit()
    return gate


def _create_assignment(
    session: Session,
    job: JobView,
    worker_id: int,
    entries: list[tuple[int, int | None]],
    now: datetime,
    expires_at: datetime,
) -> tuple[int, list[dict[str, Any]]]:
    job_id, hold = job.id, len(entries) * job.item_hold_cents
    assignment_id = session.execute(
        insert(Assignment)
        .values(
            job_id=job_id, worker_id=worker_id, state="leased", created_at=now, expires_at=expires_at, hold_cents=hold
        )
        .returning(Assignment.id)
    ).scalar_one()
    budget.hold_for_lease(session, job_id, job.currency, assignment_id, hold)
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
    count = int(expected) + (1 if pool_random().random() < expected - int(expected) else 0)
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


def _golden_candidates(engine: Engine, job_id: int, wanted: int, session: Session | None = None) -> list[int]:
    """A random sample of the job's golden items, without sorting the golden set."""
    if wanted <= 0:
        return []
    pool = _golden_pool(engine, job_id, session)
    if not pool:
        return []
    return pool_random().sample(pool, min(len(pool), wanted * 8))


def _pick_golden(session: Session, job_id: int, worker_id: int, wanted: int) -> list[int]:
    """Random golden items this worker has not seen."""
    candidates = _golden_candidates(session.get_bind(), job_id, wanted, session)  # type: ignore[arg-type]
    if not candidates:
        return []
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


def _golden_pool(
    engine: Engine, job_id: int, session: Session | None = None, loader: Callable[[], list[int]] | None = None
) -> list[int]:
    """The job's golden item ids, cached for a while per process; sorted, so that a seeded
    `pool_random` draws the same sample from them on every run."""
    now = time.monotonic()
    key = (_database(engine), job_id)
    hit = _golden_ids.get(key)
    if hit and hit[0] > now:
        return hit[1]
    if loader is not None:
        ids = loader()
    else:
        assert session is not None
        ids = list(session.execute(select(Item.id).where(Item.job_id == job_id, Item.is_golden.is_(True))).scalars())
    ids.sort()
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
    """End open leases (expired, skipped, revoked), return their real slots to the pool and
    their holds to the job's budget."""
    ended = session.execute(
        update(Assignment)
        .where(Assignment.id.in_(assignment_ids), Assignment.state == "leased")
        .values(state=state, finished_at=now)
        .returning(Assignment.id, Assignment.hold_cents)
    ).all()
    budget.release_holds(session, job_id, [(a, h) for a, h in ended], state)
    source = select(AssignmentItem.job_id, AssignmentItem.item_id, AssignmentItem.round).where(
        and_(
            AssignmentItem.job_id == job_id,
            AssignmentItem.assignment_id.in_(assignment_ids),
            AssignmentItem.round.is_not(None),
            # Not the rounds a lowered overlap dropped while the lease was out.
            AssignmentItem.round
            < select(func.coalesce(Job.overlap_max, Job.overlap)).where(Job.id == job_id).scalar_subquery(),
        )
    )
    session.execute(insert(Slot).from_select(["job_id", "item_id", "round"], source))
