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
from marketplace.pool.connection import Statement, autocommit, database_key, fetch_all, fetch_one
from marketplace.pool.slots import GOLDEN_CAP
from marketplace.services.ledger import LEASE_HOLD, budget_account, holds_account
from marketplace.services.pricing import task_pay
from marketplace.settings import Bonus, LeaseLimits, Pricing

CANNOT_WORK = "this account cannot take work at the moment; contact support"
_ATTEMPTS = 8
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


# The whole lease in one statement: lock the worker's row and read its status, read the job,
# draw the golden count (the caller's uniform draw `r`), keep the first unseen of the caller's
# random golden sample that has not been shown its job's `golden_max_views` times (and count
# this showing), take slots of distinct unseen items (FOR UPDATE SKIP LOCKED, then deleted),
# create the assignment, its hold (`ledger.LEASE_HOLD`) and its entries in an order given by the
# caller's random bytes (4 per entry), and return the task with the items' data. It leases
# nothing unless the worker is active, holds fewer open leases than the caps (`cap` in all,
# `job_cap` of this job), the job runs, its golden sample is large enough (`sample_ok`: at least
# what `_golden_most` would draw) and some real slot was taken.
#
# One statement has one snapshot, taken before the worker's row lock is granted: when two
# leases of one worker race, the second may not see what the first took, and the unique
# (job, worker, item) of `assignmentitem` refuses it; the caller runs it again. Every LIMIT
# falls back to 0, never to "all". The job id is written from the job's row, not the
# parameter: a parameter cast to the column's type is folded when planned, and an id out of
# range would fail instead of finding no job. The "seen" tests end in OFFSET 0, which keeps
# them per-row probes of `uq_seen_once`: as anti-joins, the generic plan read all the worker's
# entries of the job on every lease, a cost that grew with every task the worker did.
LEASE = Statement.of(
    """
WITH w AS (
    SELECT status FROM account WHERE id = %(worker)s FOR UPDATE
), mine AS (  -- the worker's open leases, in all and on this job (`ix_assignment_worker_open`)
    SELECT count(*) >= %(cap)s AS full, count(*) FILTER (WHERE job_id = %(job)s) >= %(job_cap)s AS busy
    FROM assignment WHERE worker_id = %(worker)s AND state = 'leased'
), j AS (
    SELECT id, requester_id, state, title, instructions, annotation, items_per_task, golden_ratio, lease_seconds,
           item_hold_cents, currency, pricing, bonus, reward_cents,
           """
    + GOLDEN_CAP
    + """ AS golden_cap,
           (item_hold_cents = 0  -- the budget covers a whole task's worst case
            OR coalesce((SELECT balance FROM ledgerbalance WHERE account = %(budget)s), 0)
               >= items_per_task * item_hold_cents) AS affordable,
           CASE WHEN qualification IS NULL THEN 'none' ELSE coalesce((SELECT q.state FROM qualification q
                WHERE q.job_id = job.id AND q.worker_id = %(worker)s), 'absent') END AS qualification,
           least(floor(items_per_task * golden_ratio)::int
                 + (%(r)s::float8 < items_per_task * golden_ratio - floor(items_per_task * golden_ratio))::int,
                 items_per_task - 1) AS golden_n
    FROM job WHERE id = %(job)s
), blocked AS (  -- banned from this job or its requester, or cooling off
    SELECT EXISTS (SELECT 1 FROM workerblock b, j
                   WHERE b.worker_id = %(worker)s AND (b.until IS NULL OR b.until > %(now)s)
                     AND (b.job_id = j.id
                          OR (b.job_id IS NULL AND coalesce(b.requester_id, j.requester_id) = j.requester_id))) AS yes
), go AS (
    SELECT j.id, j.items_per_task, j.golden_n, j.golden_cap, j.lease_seconds, j.item_hold_cents, j.currency
    FROM j, w
    WHERE w.status = 'active' AND j.state = 'running'
      AND NOT (SELECT yes FROM blocked)
      AND NOT (SELECT full OR busy FROM mine)
      AND j.affordable
      AND j.qualification IN ('none', 'passed')
      AND cardinality(%(golden)s::bigint[]) >= least(%(pool)s::int, j.golden_n * 8)
), gc AS (  -- golden candidates: unseen by the worker, shown fewer times than the cap
    SELECT g.item_id FROM unnest(%(golden)s::bigint[]) WITH ORDINALITY AS g(item_id, n)
    JOIN item i ON i.id = g.item_id AND i.shown < (SELECT golden_cap FROM go)
    WHERE NOT EXISTS (SELECT 1 FROM assignmentitem ai
                      WHERE ai.job_id = %(job)s AND ai.worker_id = %(worker)s AND ai.item_id = g.item_id
                      OFFSET 0)
    ORDER BY g.n
    LIMIT coalesce((SELECT golden_n FROM go), 0)
), wanted AS (
    SELECT coalesce((SELECT items_per_task FROM go), 0) - (SELECT count(*) FROM gc) AS n
), picked AS (
    SELECT s.id, s.item_id, s.round FROM slot s
    WHERE s.job_id = %(job)s
      AND NOT EXISTS (SELECT 1 FROM assignmentitem ai
                      WHERE ai.job_id = %(job)s AND ai.worker_id = %(worker)s AND ai.item_id = s.item_id
                      OFFSET 0)
    ORDER BY s.round, s.item_id
    LIMIT coalesce((SELECT 2 * n FROM wanted), 0)
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT DISTINCT ON (item_id) id, item_id, round FROM picked ORDER BY item_id, round
), taken AS (
    DELETE FROM slot
    WHERE id IN (SELECT id FROM chosen ORDER BY round, item_id LIMIT coalesce((SELECT n FROM wanted), 0))
    RETURNING item_id, round
), golden AS (  -- shown once more; the cap re-checked under the row's lock (a race shows one fewer)
    UPDATE item SET shown = shown + 1
    WHERE id IN (SELECT item_id FROM gc) AND shown < (SELECT golden_cap FROM go) AND EXISTS (SELECT 1 FROM taken)
    RETURNING id AS item_id
), entries AS (
    SELECT e.item_id, e.round, row_number() OVER () AS n
    FROM (SELECT item_id, round FROM taken UNION ALL SELECT item_id, NULL FROM golden) AS e
), a AS (
    INSERT INTO assignment (job_id, worker_id, state, created_at, expires_at, hold_cents, lease_key)
    SELECT go.id, %(worker)s, 'leased', %(now)s, %(now)s + make_interval(secs => go.lease_seconds),
           (SELECT count(*) FROM entries) * go.item_hold_cents, %(key)s
    FROM go WHERE EXISTS (SELECT 1 FROM taken)
    RETURNING id, job_id, expires_at, hold_cents
), """
    + LEASE_HOLD
    + """, refs AS (
    INSERT INTO assignmentitem (assignment_id, job_id, worker_id, item_id, round, position)
    SELECT a.id, a.job_id, %(worker)s, e.item_id, e.round,
           row_number() OVER (ORDER BY substring(%(order)s::bytea FROM (4 * e.n - 3)::int FOR 4), e.n) - 1
    FROM a, entries e
    RETURNING id, item_id, position
)
SELECT w.status, j.state, j.title, j.instructions, j.annotation, j.items_per_task, j.golden_ratio,
       j.pricing, j.bonus, j.reward_cents, j.currency,
       EXISTS (SELECT 1 FROM go) AS sample_ok, a.id, a.expires_at,
       (SELECT json_agg(json_build_object('id', r.id, 'data', i.data) ORDER BY r.position)
        FROM refs r JOIN item i ON i.id = r.item_id) AS items,
       (SELECT yes FROM blocked) AS blocked, mine.full, mine.busy, j.qualification, j.affordable
FROM w CROSS JOIN mine LEFT JOIN j ON true LEFT JOIN a ON true
"""
)


@dataclass(frozen=True)
class LeaseRow:
    """What LEASE answers; `state` is None when there is no such job, `id` when nothing was leased."""

    status: str
    state: str | None
    title: str | None
    instructions: str | None
    annotation: dict[str, Any] | None
    items_per_task: int | None
    golden_ratio: float | None
    pricing: dict[str, Any] | None
    bonus: dict[str, Any] | None
    reward_cents: int | None
    currency: str | None
    sample_ok: bool
    id: int | None
    expires_at: datetime | None
    items: list[dict[str, Any]] | None
    blocked: bool | None
    full: bool  # the worker holds its limit of open leases
    busy: bool  # ... or its limit of this job's
    qualification: str | None  # 'none' (not asked), 'absent' (no row yet), or the row's state
    affordable: bool | None


@dataclass(frozen=True)
class WorkerJobsRow:
    status: str
    jobs: list[int]


WORKER_AND_RUNNING_JOBS = Statement.of("""
SELECT status, ARRAY(SELECT id FROM job WHERE state = 'running' ORDER BY id LIMIT 20) AS jobs
FROM account WHERE id = %(worker)s
""")


@dataclass(frozen=True)
class IdRow:
    id: int


# The golden items a lease may draw: shown fewer times than the job's cap (the lease re-checks).
GOLDEN_POOL = Statement.of(
    """
SELECT id FROM item
WHERE job_id = %(job)s AND is_golden AND shown < (SELECT """
    + GOLDEN_CAP
    + """ FROM job WHERE id = %(job)s)
"""
)

# A lease asked for again with the same Idempotency-Key: the task it made, as it is now.
BY_KEY = Statement.of("""
SELECT a.id, a.state, a.expires_at, j.id AS job_id, j.title, j.instructions, j.annotation,
       j.pricing, j.bonus, j.reward_cents, j.currency,
       (SELECT json_agg(json_build_object('id', ai.id, 'data', i.data) ORDER BY ai.position)
        FROM assignmentitem ai JOIN item i ON i.id = ai.item_id WHERE ai.assignment_id = a.id) AS items
FROM assignment a JOIN job j ON j.id = a.job_id
WHERE a.worker_id = %(worker)s AND a.lease_key = %(key)s
""")


@dataclass(frozen=True)
class KeyedRow:
    id: int
    state: str
    expires_at: datetime
    job_id: int
    title: str
    instructions: str
    annotation: dict[str, Any]
    pricing: dict[str, Any] | None
    bonus: dict[str, Any] | None
    reward_cents: int
    currency: str
    items: list[dict[str, Any]]


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
    reclaimed = False
    for attempt in range(_ATTEMPTS):
        try:
            row = _run_lease(cur, job_id, worker_id, now, draw, sample, len(pool), order, key, limits)
        except psycopg.errors.UniqueViolation as error:
            if error.diag.constraint_name != "uq_seen_once" or attempt == _ATTEMPTS - 1:
                raise
            continue  # a lease of the same worker committed while this one waited for its row
        except psycopg.errors.CheckViolation as error:
            if error.diag.constraint_name != "ck_balance_not_negative":
                raise
            return None  # a concurrent lease took the budget's last task: no work (progress says so)
        if row is None or row.status != AccountStatus.ACTIVE:
            raise Forbidden(CANNOT_WORK)
        if row.state is None and named:
            raise NotFound(f"job {job_id} not found")
        if row.full:
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
            return None  # no golden-only tasks: golden items ride along with real work
        assert row.expires_at is not None and row.items is not None and row.annotation is not None
        job = {"id": job_id, "title": row.title, "instructions": row.instructions, "annotation": row.annotation}
        assert row.reward_cents is not None and row.currency is not None
        pay = _pay(row.pricing, row.bonus, row.reward_cents, row.currency, row.annotation, len(row.items))
        return LeasedTask(
            id=row.id, state=AssignmentState.LEASED, expires_at=row.expires_at, items=row.items, job=job, pay=pay
        )
    raise RuntimeError(f"no lease after {_ATTEMPTS} attempts")


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
) -> LeaseRow | None:
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
    )


def _golden_most(items_per_task: int, ratio: float) -> int:
    """The most golden items one task can hold (what LEASE's `golden_n` can reach)."""
    return max(0, min(math.ceil(items_per_task * ratio), items_per_task - 1))


def _golden_pool(engine: Engine, job_id: int, loader: Callable[[], list[int]]) -> list[int]:
    """The job's golden item ids, cached for a while per process."""
    now = time.monotonic()
    key = (database_key(engine), job_id)
    hit = _golden_ids.get(key)
    if hit and hit[0] > now:
        return hit[1]
    ids = loader()
    _golden_ids[key] = (now + _GOLDEN_CACHE_SECONDS, ids)
    return ids
