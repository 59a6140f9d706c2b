"""The hot path's statements on PostgreSQL: few round trips, run on a raw psycopg connection
checked out of the hot engine's pool (`db.get_hot_engine`; no SQLAlchemy Session), prepared on
first use and always run on their generic plan (see `db.HOT_PG_CONNECT_ARGS`).

Why not SQLAlchemy here: the benchmark (`bench/hotpath.py`) measured ~0.33 ms of client CPU
per `select()` statement through SQLAlchemy against ~0.07 ms for a prepared psycopg one
(and ~0.57 ms per statement with the Session's begin/commit/close around it), and the old
path took ~20 statements per lease+submit. The same steps exist in portable
SQLAlchemy in `leasing.py` / `submissions.py`, which SQLite runs; the tests run both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Engine

from marketplace.services.ledger import budget_account, holds_account

# psycopg caches the conversion of a statement's %(name)s placeholders only for statements up
# to 4096 bytes (`psycopg._queries.MAX_CACHED_STATEMENT_LENGTH`); a longer one is re-split by a
# regex on every execution, which cost the lease ~0.2 ms of API CPU. The lease statement is
# written readably below and sent without its comments and spaces that mean nothing;
# `tests/test_hot_path.py` checks that every statement here stays under the limit.
STATEMENT_CACHE_LIMIT = 4096


def compact(sql: str) -> str:
    """The statement without `--` comments and the spaces around ( ) , = < > * + (none of our
    string literals holds those)."""
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = re.sub(r"\s+", " ", sql).strip()
    return re.sub(r" ?([(),=<>*+]) ?", r"\1", sql)


LOCK_TASK = """
SELECT a.worker_id, a.job_id, a.state, a.expires_at, a.idempotency_key, a.finished_at, j.annotation,
       ai.id, ai.item_id, ai.round, i.is_golden, i.answer
FROM assignment a
JOIN job j ON j.id = a.job_id
JOIN assignmentitem ai ON ai.assignment_id = a.id
JOIN item i ON i.id = ai.item_id
WHERE a.id = %s
FOR UPDATE OF a
"""

# Store the answers, close the assignment and look at the pool, in one round trip.
STORE_SUBMIT = """
WITH stored AS (
    INSERT INTO answer (job_id, item_id, worker_id, assignment_id, round, label, is_golden, correct, excluded,
                        created_at)
    SELECT %(job)s, e.item_id, %(worker)s, %(assignment)s, e.round, e.label, e.is_golden, e.correct, false, %(now)s
    FROM unnest(%(items)s::bigint[], %(rounds)s::int[], %(labels)s::varchar[], %(golden)s::bool[],
                %(correct)s::bool[]) AS e(item_id, round, label, is_golden, correct)
    RETURNING id
), closed AS (
    UPDATE assignment SET state = 'submitted', finished_at = %(now)s, idempotency_key = %(key)s
    WHERE id = %(assignment)s
    RETURNING id
)
SELECT (SELECT array_agg(id) FROM stored),
       (SELECT count(*) FROM closed),
       EXISTS (SELECT 1 FROM slot WHERE job_id = %(job)s ORDER BY job_id DESC, round DESC, item_id DESC LIMIT 1)
"""


# The whole lease in one statement, run on its own (autocommit): lock the worker's row and
# read its status, read the job, draw the golden count (`leasing._golden_count`, with the
# caller's uniform draw `r`), keep the first unseen of the caller's random golden sample, take
# slots of distinct unseen items (FOR UPDATE SKIP LOCKED, then deleted: concurrent leases skip
# each other and the queue scan stays short), create the assignment and its entries in an
# order given by the caller's random bytes (4 per entry), and return the task with the items'
# data. It leases nothing unless the worker is active, the job running, the golden sample large
# enough (`sample_ok`: at least what `_pick_golden` would draw) and some real slot was taken.
#
# One statement has one snapshot, taken before the worker's row lock is granted: when two
# leases of one worker race, the second may not see what the first took, and the unique
# (job, worker, item) of `assignmentitem` refuses it; the caller runs it again (see
# `leasing.lease_task_pg`). Every LIMIT falls back to 0, never to "all". The job id is written
# from the job's row, not the parameter: a parameter cast to the column's type is folded
# when planned, and an id out of range would fail instead of finding no job. The "seen"
# tests end in OFFSET 0, which keeps them per-row probes of `uq_seen_once`: as anti-joins,
# the generic plan that psycopg's prepared statement settles on (planned while the tables
# were small) read all the worker's entries of the job on every lease, a cost that grew
# with every task the worker did.
LEASE = compact("""
WITH w AS (
    SELECT status FROM account WHERE id = %(worker)s FOR UPDATE
), j AS (
    SELECT id, requester_id, state, title, instructions, annotation, items_per_task, golden_ratio, lease_seconds,
           item_hold_cents, currency,
           (item_hold_cents = 0  -- the budget covers a whole task's worst case
            OR coalesce((SELECT balance FROM ledgerbalance WHERE account = %(budget)s), 0)
               >= items_per_task * item_hold_cents) AS affordable,
           CASE WHEN qualification IS NULL THEN 'none' ELSE coalesce((SELECT q.state FROM qualification q
                WHERE q.job_id = job.id AND q.worker_id = %(worker)s), 'absent') END AS qualification_state,
           least(floor(items_per_task * golden_ratio)::int
                 + (%(r)s::float8 < items_per_task * golden_ratio - floor(items_per_task * golden_ratio))::int,
                 items_per_task - 1) AS golden_wanted
    FROM job WHERE id = %(job)s
), blocked AS (  -- banned from this job or its requester, or cooling off
    SELECT EXISTS (SELECT 1 FROM workerblock b, j
                   WHERE b.worker_id = %(worker)s AND (b.until IS NULL OR b.until > %(now)s)
                     AND (b.job_id = j.id
                          OR (b.job_id IS NULL AND coalesce(b.requester_id, j.requester_id) = j.requester_id))) AS yes
), go AS (
    SELECT j.id, j.items_per_task, j.golden_wanted, j.lease_seconds, j.item_hold_cents, j.currency FROM j, w
    WHERE w.status = 'active' AND j.state = 'running'
      AND NOT (SELECT yes FROM blocked)
      AND j.affordable
      AND j.qualification_state IN ('none', 'passed')  -- qualified if asked (tests: leasing._qualification_pg)
      AND cardinality(%(golden)s::bigint[]) >= least(%(pool)s::int, j.golden_wanted * 8)
), golden AS (
    SELECT g.item_id FROM unnest(%(golden)s::bigint[]) WITH ORDINALITY AS g(item_id, n)
    WHERE NOT EXISTS (SELECT 1 FROM assignmentitem ai
                      WHERE ai.job_id = %(job)s AND ai.worker_id = %(worker)s AND ai.item_id = g.item_id
                      OFFSET 0)
    ORDER BY g.n
    LIMIT coalesce((SELECT golden_wanted FROM go), 0)
), wanted AS (
    SELECT coalesce((SELECT items_per_task FROM go), 0) - (SELECT count(*) FROM golden) AS n
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
), entries AS (
    SELECT e.item_id, e.round, row_number() OVER () AS n
    FROM (SELECT item_id, round FROM taken
          UNION ALL
          SELECT item_id, NULL FROM golden WHERE EXISTS (SELECT 1 FROM taken)) AS e
), a AS (
    INSERT INTO assignment (job_id, worker_id, state, created_at, expires_at, hold_cents)
    SELECT go.id, %(worker)s, 'leased', %(now)s, %(now)s + make_interval(secs => go.lease_seconds),
           (SELECT count(*) FROM entries) * go.item_hold_cents
    FROM go WHERE EXISTS (SELECT 1 FROM taken)
    RETURNING id, job_id, expires_at, hold_cents
), hold AS (  -- the task's worst case moves from the budget to the holds (services/budget.py)
    INSERT INTO ledgertxn (kind, job_id, assignment_id, memo, created_at)
    SELECT 'hold', a.job_id, a.id, '', %(now)s FROM a WHERE a.hold_cents > 0
    RETURNING id
), hold_entries AS (
    INSERT INTO ledgerentry (txn_id, account, amount, currency)
    SELECT hold.id, m.account, m.amount, go.currency
    FROM hold, a, go,
         LATERAL (VALUES (%(budget)s::varchar, -a.hold_cents::bigint), (%(holds)s::varchar, a.hold_cents::bigint))
             AS m(account, amount)
), locked AS (  -- balance rows are locked in account order everywhere (`ledger.post`): no deadlocks
    SELECT account FROM ledgerbalance
    WHERE account IN (%(budget)s, %(holds)s) AND EXISTS (SELECT 1 FROM a WHERE a.hold_cents > 0)
    ORDER BY account
    FOR UPDATE
), balances AS (  -- below zero under a race: the balance CHECK fails the whole lease
    UPDATE ledgerbalance b
    SET balance = b.balance + CASE WHEN b.account = %(budget)s THEN -a.hold_cents ELSE a.hold_cents END
    FROM a
    WHERE b.account IN (SELECT account FROM locked) AND a.hold_cents > 0
), refs AS (
    INSERT INTO assignmentitem (assignment_id, job_id, worker_id, item_id, round, position)
    SELECT a.id, a.job_id, %(worker)s, e.item_id, e.round,
           row_number() OVER (ORDER BY substring(%(order)s::bytea FROM (4 * e.n - 3)::int FOR 4), e.n) - 1
    FROM a, entries e
    RETURNING id, item_id, position
)
SELECT w.status, j.state, j.title, j.instructions, j.annotation, j.items_per_task, j.golden_ratio,
       EXISTS (SELECT 1 FROM go), a.id, a.expires_at,
       (SELECT json_agg(json_build_object('id', r.id, 'data', i.data) ORDER BY r.position)
        FROM refs r JOIN item i ON i.id = r.item_id),
       (SELECT yes FROM blocked), j.qualification_state, j.affordable
FROM w LEFT JOIN j ON true LEFT JOIN a ON true
""")

# Random order bytes per lease: 4 per entry, for the most entries a task can have
# (`items_per_task` is at most 100, see `schemas.JobCreateSchema`).
ORDER_BYTES = 4 * 100

WORKER_AND_RUNNING_JOBS = """
SELECT status, ARRAY(SELECT id FROM job WHERE state = 'running' ORDER BY id LIMIT 20)
FROM account WHERE id = %s
"""

GOLDEN_POOL = "SELECT id FROM item WHERE job_id = %s AND is_golden"

# The whole submit in one statement, run on its own (autocommit), for a submit that is in
# order: the assignment is the worker's, leased, not past its deadline, and the answers name
# each of its entries once with a label of the job's. Anything else changes nothing and
# returns no job: the caller then runs the checking path (`submissions.submit_pg`) for the
# precise refusal, or the replay of a retried submit. The UPDATE locks the assignment row
# and re-checks its state once a concurrent submit of it commits. The state and deadline
# test is wrapped in IS TRUE so that the planner finds the row by its primary key, not by
# walking `ix_assignment_open` (every open lease); the pool test is a scalar subquery so
# that it reads the queue index from its far end (an EXISTS became a heap scan through the
# consumed slots at the front).
SUBMIT = """
WITH closed AS (
    UPDATE assignment a SET state = 'submitted', finished_at = %(now)s, idempotency_key = %(key)s
    FROM job j
    WHERE a.id = %(assignment)s AND a.worker_id = %(worker)s
      AND (a.state = 'leased' AND a.expires_at >= %(now)s) IS TRUE
      AND j.id = a.job_id
      AND (SELECT count(*) FROM assignmentitem ai WHERE ai.assignment_id = a.id) = cardinality(%(refs)s::bigint[])
      AND NOT EXISTS (
          SELECT 1 FROM unnest(%(refs)s::bigint[]) AS u(ref)
          WHERE NOT EXISTS (SELECT 1 FROM assignmentitem ai WHERE ai.id = u.ref AND ai.assignment_id = a.id))
      AND %(labels)s::text[] <@ ARRAY(SELECT json_array_elements_text(j.annotation -> 'labels'))
    RETURNING a.id, a.job_id
), stored AS (
    INSERT INTO answer (job_id, item_id, worker_id, assignment_id, round, label, is_golden, correct, excluded,
                        created_at)
    SELECT c.job_id, ai.item_id, %(worker)s, c.id, ai.round, u.label, i.is_golden,
           CASE WHEN i.is_golden THEN coalesce(u.label = i.answer, false) END, false, %(now)s
    FROM closed c
    CROSS JOIN unnest(%(refs)s::bigint[], %(labels)s::varchar[]) AS u(ref, label)
    JOIN assignmentitem ai ON ai.id = u.ref AND ai.assignment_id = c.id
    JOIN item i ON i.id = ai.item_id
    RETURNING id, is_golden
)
SELECT c.job_id, (SELECT array_agg(id) FROM stored), (SELECT count(*) FROM stored WHERE is_golden),
       (SELECT 1 FROM slot WHERE job_id = c.job_id ORDER BY job_id DESC, round DESC, item_id DESC LIMIT 1) IS NOT NULL
FROM closed c
"""

JOB_FINISHED_LOCK = "SELECT id FROM job WHERE id = %s FOR UPDATE"

# Run after the job row is locked, in a statement of its own: its snapshot then sees every
# submit that committed before the lock was granted.
JOB_FINISHED = """
WITH done AS (
    SELECT NOT EXISTS (SELECT 1 FROM assignment WHERE job_id = %(job)s AND state = 'leased')
       AND NOT EXISTS (SELECT 1 FROM slot WHERE job_id = %(job)s) AS finished
), completed AS (
    UPDATE job SET state = 'completed', updated_at = %(now)s
    WHERE id = %(job)s AND state = 'running' AND (SELECT finished FROM done)
    RETURNING id
)
SELECT finished, (SELECT count(*) FROM completed) FROM done
"""

_CURSOR = "marketplace.hot_cursor"


@contextmanager
def transaction(engine: Engine) -> Iterator[Any]:
    """A psycopg cursor on a connection of the engine's pool, in a transaction of its own:
    committed when the block ends, rolled back when it raises; the connection always goes
    back to the pool. The cursor is kept with the pooled connection and reused."""
    pooled = engine.raw_connection()
    try:
        cur = pooled.info.get(_CURSOR)
        if cur is None or cur.closed:
            cur = pooled.info[_CURSOR] = pooled.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            yield cur
        except BaseException:
            pooled.rollback()
            raise
        pooled.commit()
    finally:
        pooled.close()


@contextmanager
def autocommit(engine: Engine) -> Iterator[Any]:
    """A psycopg cursor on a connection of the engine's pool in autocommit mode: each
    statement is a transaction of its own (no BEGIN or COMMIT round trips). The connection
    goes back to the pool as it came, or is dropped when it cannot be."""
    pooled = engine.raw_connection()
    try:
        conn: Any = pooled.driver_connection
        cur = pooled.info.get(_CURSOR)
        if cur is None or cur.closed:
            cur = pooled.info[_CURSOR] = conn.cursor()
        conn.autocommit = True
        try:
            yield cur
        finally:
            try:
                conn.autocommit = False
            except psycopg.Error:  # a broken connection: not for the pool
                pooled.invalidate()
    finally:
        pooled.close()


def lease(
    cur: Any,
    job_id: int,
    worker_id: int,
    now: datetime,
    draw: float,
    golden: list[int],
    pool: int,
    order: bytes,
) -> tuple[Any, ...] | None:
    """Run LEASE; the row: status, job state, title, instructions, annotation, items per task,
    golden ratio, sample_ok, assignment id, expires at, items ([{id, data}] in task order),
    blocked (the worker is kept from this job), the worker's qualification state on the job
    ('none' when the job asks for none, 'absent' when the worker has no row yet; real work
    only with 'none' or 'passed'), affordable (the job's budget covers a task's worst case)."""
    params = {
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
    return cur.execute(LEASE, params, prepare=True).fetchone()  # type: ignore[no-any-return]


def worker_and_running_jobs(cur: Any, worker_id: int) -> tuple[str, list[int]] | None:
    row = cur.execute(WORKER_AND_RUNNING_JOBS, (worker_id,), prepare=True).fetchone()
    return None if row is None else (row[0], list(row[1]))


def golden_pool(cur: Any, job_id: int) -> list[int]:
    return [r[0] for r in cur.execute(GOLDEN_POOL, (job_id,), prepare=True).fetchall()]


def submit(
    cur: Any,
    assignment_id: int,
    worker_id: int,
    answers: list[dict[str, Any]],
    now: datetime,
    key: str | None,
) -> tuple[int, list[int], int, bool] | None:
    """Run SUBMIT: (job id, answer ids, golden answers among them, pool has free slots), or None
    when it stored nothing."""
    params = {
        "assignment": assignment_id,
        "worker": worker_id,
        "now": now,
        "key": key,
        "refs": [a["item_id"] for a in answers],
        "labels": [a["label"] for a in answers],
    }
    row = cur.execute(SUBMIT, params, prepare=True).fetchone()
    if row is None:
        return None
    return row[0], list(row[1]), int(row[2]), bool(row[3])


def lock_task(cur: Any, assignment_id: int) -> list[Any]:
    return cur.execute(LOCK_TASK, (assignment_id,), prepare=True).fetchall()  # type: ignore[no-any-return]


def store_submit(
    cur: Any,
    job_id: int,
    worker_id: int,
    assignment_id: int,
    rows: list[dict[str, Any]],
    now: datetime,
    key: str | None,
) -> tuple[list[int], bool]:
    """Insert the answers and mark the assignment submitted; returns answer ids and whether
    the pool still has free slots."""
    params = {
        "job": job_id,
        "worker": worker_id,
        "assignment": assignment_id,
        "now": now,
        "key": key,
        "items": [r["item_id"] for r in rows],
        "rounds": [r["round"] for r in rows],
        "labels": [r["label"] for r in rows],
        "golden": [r["is_golden"] for r in rows],
        "correct": [r["correct"] for r in rows],
    }
    ids, closed, has_slots = cur.execute(STORE_SUBMIT, params, prepare=True).fetchone()
    assert closed == 1
    return list(ids), bool(has_slots)


def job_finished(cur: Any, job_id: int, now: datetime) -> bool:
    """No free slots and no open leases: the job is done (marked completed if running)."""
    cur.execute(JOB_FINISHED_LOCK, (job_id,), prepare=True)
    finished, _ = cur.execute(JOB_FINISHED, {"job": job_id, "now": now}, prepare=True).fetchone()
    return bool(finished)
