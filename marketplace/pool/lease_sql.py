"""The lease's statements and the rows they answer (run by `lease.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marketplace.pool.connection import Statement
from marketplace.pool.slots import GOLDEN_CAP
from marketplace.services.ledger import LEASE_HOLD


def unseen(item: str) -> str:
    """The condition "the worker has not been given `item` in this job", one per-row probe of
    `uq_seen_once` (OFFSET 0 keeps it a probe: as an anti-join, the generic plan read all the
    worker's entries of the job on every lease)."""
    return (
        "NOT EXISTS (SELECT 1 FROM assignmentitem ai WHERE ai.job_id = %(job)s"
        f" AND ai.worker_id = %(worker)s AND ai.item_id = {item} OFFSET 0)"
    )


# The whole lease in one statement: lock the worker's row and read its status, read the job,
# draw the golden count (the caller's uniform draw `r`), keep the first unseen of the caller's
# random golden sample that has not been shown its job's `golden_max_views` times (and count
# this showing), take slots of distinct unseen items (FOR UPDATE SKIP LOCKED, then deleted):
# item by item, not round by round, so an item's answers arrive close together (its result, and
# the rules' view of a spammer's answers against the others', come early), a random half of the
# first 2n unseen items (hashed with `r`), so workers who lease one after another do not form
# fixed groups answering the same items,
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
    SELECT count(*) >= %(cap)s AS at_cap, count(*) FILTER (WHERE job_id = %(job)s) >= %(job_cap)s AS busy
    FROM assignment WHERE worker_id = %(worker)s AND state = 'leased'
), j AS (
    SELECT id, requester_id, state, title, instructions, annotation, items_per_task, golden_ratio, lease_seconds,
           overlap,
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
    SELECT j.id, j.items_per_task, j.golden_n, j.golden_cap, j.lease_seconds, j.item_hold_cents, j.currency, j.overlap
    FROM j, w
    WHERE w.status = 'active' AND j.state = 'running'
      AND NOT (SELECT yes FROM blocked)
      AND NOT (SELECT at_cap OR busy FROM mine)
      AND j.affordable
      AND j.qualification IN ('none', 'passed')
      AND cardinality(%(golden)s::bigint[]) >= least(%(pool)s::int, j.golden_n * 8)
), gc AS (  -- golden candidates: unseen by the worker, shown fewer times than the cap
    SELECT g.item_id FROM unnest(%(golden)s::bigint[]) WITH ORDINALITY AS g(item_id, n)
    JOIN item i ON i.id = g.item_id AND i.shown < (SELECT golden_cap FROM go)
    WHERE """
    + unseen("g.item_id")
    + """
    ORDER BY g.n
    LIMIT coalesce((SELECT golden_n FROM go), 0)
), wanted AS (
    SELECT coalesce((SELECT items_per_task FROM go), 0) - (SELECT count(*) FROM gc) AS n
), picked AS (
    SELECT s.id, s.item_id, s.round FROM slot s
    WHERE s.job_id = %(job)s
      AND """
    + unseen("s.item_id")
    + """
    ORDER BY s.item_id, s.round
    LIMIT coalesce((SELECT 2 * n * overlap FROM wanted, go), 0)
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT DISTINCT ON (item_id) id, item_id, round FROM picked ORDER BY item_id, round
), taken AS (
    DELETE FROM slot
    WHERE id IN (SELECT id FROM chosen ORDER BY hashtext(item_id::text || %(r)s::text)
                 LIMIT coalesce((SELECT n FROM wanted), 0))
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
       (SELECT yes FROM blocked) AS blocked, mine.at_cap, mine.busy, j.qualification, j.affordable
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
    at_cap: bool  # the worker holds its limit of open leases
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
# In id order: a seeded pool (`pool/randomness.py`) must draw from the same list every run,
# whatever order a vacuum left the rows in.
GOLDEN_POOL = Statement.of(
    """
SELECT id FROM item
WHERE job_id = %(job)s AND is_golden AND shown < (SELECT """
    + GOLDEN_CAP
    + """ FROM job WHERE id = %(job)s)
ORDER BY id
"""
)

# The worker's row lock, taken before a lease statement that must see every lease of the worker
# that committed before it (`lease._run_lease`, serialised).
LOCK_WORKER = Statement.of("SELECT id FROM account WHERE id = %(worker)s FOR UPDATE")

# Whether the job has a free slot of an item the worker has not seen (a plain read: it does not
# wait for, or skip, rows another lease holds locked).
FREE_FOR_WORKER = Statement.of(
    """
SELECT EXISTS (
    SELECT 1 FROM slot s
    WHERE s.job_id = %(job)s
      AND """
    + unseen("s.item_id")
    + """
) AS yes
"""
)


@dataclass(frozen=True)
class FlagRow:
    yes: bool


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
