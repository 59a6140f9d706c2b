"""Lease the next task: one statement per lease, run on its own (autocommit).

Free work is the `slot` table; a lease deletes the slots it takes (picked with `FOR UPDATE SKIP
LOCKED`, so concurrent leases never wait on each other and never take the same slot), so what a
lease scans stays proportional to what it takes. The worker's row is locked first: one worker's
leases run one at a time, which keeps "never the same item twice" from racing with itself, and
the account's status is read under that lock.

Workers see per-task item references (the `assignmentitem` id), never item ids, so nothing
about an item, golden or not, can be read from its id.

A job that asks for a qualification gives a worker who has not passed it a test first: the lease
statement gives real work only to workers who passed, and the rare rest (a test, a carry-over)
runs in a Session (`_qualification`, `pool/tests.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlmodel import Session

from marketplace.errors import Conflict, Forbidden, NotFound
from marketplace.models import AccountStatus, AssignmentKind, AssignmentState, JobState, QualificationState, utcnow
from marketplace.pool import randomness, release, tests
from marketplace.pool.connection import autocommit, database_key, fetch_all, fetch_one
from marketplace.pool.lease_sql import (
    BY_KEY,
    FREE_FOR_WORKER,
    GOLDEN_POOL,
    LEASE,
    LOCK_WORKER,
    WORKER_AND_RUNNING_JOBS,
    FlagRow,
    IdRow,
    KeyedRow,
    LeaseRow,
    WorkerJobsRow,
)
from marketplace.services.ledger import budget_account, holds_account
from marketplace.services.pricing import task_pay
from marketplace.settings import Bonus, LeaseLimits, Pricing

CANNOT_WORK = "this account cannot take work at the moment; contact support"
_ATTEMPTS = 8
_LOCKED_PAUSE = 0.005  # seconds: a lease statement holds its locks for about a millisecond
_GOLDEN_CACHE_SECONDS = 30.0
_GOLDEN_GUESS = 5
# Order bytes per lease for the most entries a task can have (`items_per_task` is at most 100,
# see `schemas.JobCreateSchema`).
MAX_ENTRIES = 100
_golden_ids: dict[tuple[str, int], tuple[float, list[int]]] = {}
# The job's (items per task, golden ratio) as last seen, to size the golden sample before the
# lease statement reads the job; a guess until then.
_job_shapes: dict[tuple[str, int], tuple[int, float]] = {}
DEFAULT_LIMITS = LeaseLimits()


@dataclass(frozen=True)
class LeasedTask:
    id: int
    state: AssignmentState
    expires_at: datetime
    items: list[dict[str, Any]]
    job: dict[str, Any]
    kind: AssignmentKind = AssignmentKind.TASK
    pay: dict[str, Any] | None = None  # what the task pays (`pricing.task_pay`)


def lease_task(
    engine: Engine,
    worker_id: int,
    job_id: int | None = None,
    now: datetime | None = None,
    *,
    key: str | None = None,
    limits: LeaseLimits = DEFAULT_LIMITS,
) -> LeasedTask | None:
    """Lease the next task for a worker (from `job_id`, or from any running job), or None when
    there is no work for it now. A banned account is refused; a named job that does not exist
    is a 404; a worker holding its limit of open leases is a 409; anything else that keeps work
    from the worker is a plain None. With `key` (the request's Idempotency-Key), a retry returns
    the task the first request leased, as it is now."""
    now = now or utcnow()
    with autocommit(engine) as cur:
        if key is not None and (known := _by_key(cur, worker_id, key)) is not None:
            return known
        if job_id is not None:
            jobs = [job_id]
        else:
            found = fetch_one(cur, WorkerJobsRow, WORKER_AND_RUNNING_JOBS, {"worker": worker_id})
            if found is None or found.status != AccountStatus.ACTIVE:
                raise Forbidden(CANNOT_WORK)
            jobs = found.jobs
        for job in jobs:
            try:
                task = _lease_from_job(
                    cur, engine, job, worker_id, now, named=job_id is not None, key=key, limits=limits
                )
            except psycopg.errors.UniqueViolation as error:
                if key is None or error.diag.constraint_name != "uq_assignment_lease_key":
                    raise
                return _by_key(cur, worker_id, key)  # the same key's lease committed meanwhile
            if task is not None:
                return task
    return None


def _by_key(cur: Any, worker_id: int, key: str) -> LeasedTask | None:
    row: KeyedRow | None = fetch_one(cur, KeyedRow, BY_KEY, {"worker": worker_id, "key": key})
    if row is None:
        return None
    job = {"id": row.job_id, "title": row.title, "instructions": row.instructions, "annotation": row.annotation}
    return LeasedTask(
        id=row.id,
        state=AssignmentState(row.state),
        expires_at=row.expires_at,
        items=row.items,
        job=job,
        pay=_pay(row.pricing, row.bonus, row.reward_cents, row.currency, row.annotation, len(row.items)),
    )


def _pay(
    pricing: dict[str, Any] | None,
    bonus: dict[str, Any] | None,
    reward_cents: int,
    currency: str,
    annotation: dict[str, Any],
    items: int,
) -> dict[str, Any]:
    return task_pay(Pricing.load(pricing, reward_cents), Bonus.load(bonus), annotation["type"], items, currency)


def _lease_from_job(
    cur: Any,
    engine: Engine,
    job_id: int,
    worker_id: int,
    now: datetime,
    *,
    named: bool,
    key: str | None,
    limits: LeaseLimits,
) -> LeasedTask | None:
    cache_key = (database_key(engine), job_id)
    pool = _golden_pool(engine, job_id, lambda: [r.id for r in fetch_all(cur, IdRow, GOLDEN_POOL, {"job": job_id})])
    shape = _job_shapes.get(cache_key)
    sample = randomness.sample(pool, (_golden_most(*shape) if shape else _GOLDEN_GUESS) * 8)
    draw, order = randomness.uniform(), randomness.order_bytes(MAX_ENTRIES)
    reclaimed = serialised = False
    for attempt in range(_ATTEMPTS):
        try:
            row = _run_lease(cur, job_id, worker_id, now, draw, sample, len(pool), order, key, limits, serialised)
        except psycopg.errors.UniqueViolation as error:
            if error.diag.constraint_name != "uq_seen_once" or attempt == _ATTEMPTS - 1:
                raise
            serialised = True  # a lease of the same worker committed while this one waited for its row
            continue
        except psycopg.errors.CheckViolation as error:
            if error.diag.constraint_name != "ck_balance_not_negative":
                raise
            return None  # a concurrent lease took the budget's last task: no work (progress says so)
        if row is None or row.status != AccountStatus.ACTIVE:
            raise Forbidden(CANNOT_WORK)
        if row.state is None and named:
            raise NotFound(f"job {job_id} not found")
        if row.at_cap:
            raise Conflict(f"you hold {limits.open_leases} open tasks: submit or skip one before taking another")
        if row.busy:
            return None  # the worker holds its share of this job: another job's work, or none
        if row.state != JobState.RUNNING or row.blocked or not row.affordable:
            return None  # not running, kept from it, or its budget is spent: no work, nothing revealed
        if attempt == 0:  # a job that exists and runs: its overdue leases, now and then
            release.reclaim_now_and_then(engine, job_id, now)
        if row.qualification == QualificationState.FAILED:
            return None  # final until an operator resets it
        if row.qualification not in ("none", QualificationState.PASSED):  # no qualification yet, or a test out
            qualified, test = _qualification(engine, job_id, worker_id, now)
            if qualified:
                continue  # carried over (or the job changed) just now: lease again
            return test
        assert row.items_per_task is not None and row.golden_ratio is not None
        _job_shapes[cache_key] = (row.items_per_task, row.golden_ratio)
        if not row.sample_ok:  # drawn for other settings of the job: draw again for these
            sample = randomness.sample(pool, _golden_most(row.items_per_task, row.golden_ratio) * 8)
            continue
        if row.id is None:
            if not reclaimed and release.reclaim_apart(engine, job_id, now):
                reclaimed = True  # the pool ran dry: overdue leases first
                continue
            if attempt < _ATTEMPTS - 1 and _locked_work_left(cur, job_id, worker_id):
                time.sleep(_LOCKED_PAUSE)  # held by a lease under way, which may leave it free
                continue
            return None  # no golden-only tasks: golden items ride along with real work
        assert row.expires_at is not None and row.items is not None and row.annotation is not None
        job = {"id": job_id, "title": row.title, "instructions": row.instructions, "annotation": row.annotation}
        assert row.reward_cents is not None and row.currency is not None
        pay = _pay(row.pricing, row.bonus, row.reward_cents, row.currency, row.annotation, len(row.items))
        return LeasedTask(
            id=row.id, state=AssignmentState.LEASED, expires_at=row.expires_at, items=row.items, job=job, pay=pay
        )
    raise RuntimeError(f"no lease after {_ATTEMPTS} attempts")


def _locked_work_left(cur: Any, job_id: int, worker_id: int) -> bool:
    """A free slot the worker may take exists, though the lease skipped it: another lease held
    its row locked (a lease locks more rows than it takes). Near a job's end, answering "no work"
    then would send the worker away from work that is free a moment later."""
    row: FlagRow = fetch_one(cur, FlagRow, FREE_FOR_WORKER, {"job": job_id, "worker": worker_id})
    return row.yes


def _run_lease(
    cur: Any,
    job_id: int,
    worker_id: int,
    now: datetime,
    draw: float,
    golden: list[int],
    pool: int,
    order: bytes,
    key: str | None,
    limits: LeaseLimits,
    serialised: bool = False,
) -> LeaseRow | None:
    """The lease statement, on its own (autocommit), or `serialised`: in a transaction that
    takes the worker's row lock first, so that the statement's snapshot, taken after the lock,
    sees every lease of this worker that committed before. The first try needs no more than
    one statement; a try that lost the race to another lease of the same worker (its snapshot
    predated that lease's commit and it picked an item that lease took) cannot lose it again."""
    params = {
        "key": key,
        "cap": limits.open_leases,
        "job_cap": limits.open_leases_per_job,
        "job": job_id,
        "worker": worker_id,
        "now": now,
        "r": draw,
        "golden": golden,
        "pool": pool,
        "order": order,
        "budget": budget_account(job_id),
        "holds": holds_account(job_id),
    }
    if not serialised:
        return fetch_one(cur, LeaseRow, LEASE, params)  # type: ignore[no-any-return]
    with cur.connection.transaction():
        fetch_one(cur, IdRow, LOCK_WORKER, {"worker": worker_id})
        return fetch_one(cur, LeaseRow, LEASE, params)  # type: ignore[no-any-return]


def _qualification(engine: Engine, job_id: int, worker_id: int, now: datetime) -> tuple[bool, LeasedTask | None]:
    """A job that asks for a qualification, for a worker who has not passed it: in a Session and
    transaction of its own (rare: a worker's first lease of such a job, or one while its test is
    out). (True, None) when the worker may have real tasks now (carried over, or the job changed
    since the lease statement read it: lease again); else (False, a test to take, or None)."""
    with Session(engine, expire_on_commit=False) as session:
        gate = tests.gate(session, job_id, worker_id, now)
        session.commit()
    if isinstance(gate, bool):
        return gate, None
    return False, LeasedTask(
        id=gate.id,
        state=AssignmentState.LEASED,
        expires_at=gate.expires_at,
        items=gate.items,
        job=gate.job,
        kind=AssignmentKind.QUALIFICATION,
        pay=gate.pay,
    )


def _golden_most(items_per_task: int, ratio: float) -> int:
    """The most golden items one task can hold (what LEASE's `golden_n` can reach)."""
    return max(0, min(math.ceil(items_per_task * ratio), items_per_task - 1))


def _golden_pool(engine: Engine, job_id: int, loader: Callable[[], list[int]]) -> list[int]:
    """The job's golden item ids, cached for a while per process (read on every lease when the
    pool is seeded: a refresh timed by the clock would make a seeded run depend on its speed)."""
    now = time.monotonic()
    key = (database_key(engine), job_id)
    hit = _golden_ids.get(key)
    if hit and hit[0] > now and not randomness.seeded():
        return hit[1]
    ids = loader()
    _golden_ids[key] = (now + _GOLDEN_CACHE_SECONDS, ids)
    return ids
