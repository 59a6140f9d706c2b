"""The hot path's statements on PostgreSQL: few round trips, run on the session's own psycopg
connection (so they share its transaction) and prepared by psycopg after a few uses.

Why not SQLAlchemy here: the benchmark (`bench/hotpath.py`) measured ~0.33 ms of client CPU
per `select()` statement through SQLAlchemy against ~0.07 ms for a prepared psycopg one,
and the old path took ~20 statements per lease+submit. The same steps exist in portable
SQLAlchemy in `leasing.py` / `submissions.py`, which SQLite runs; the tests run both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

WORKER_AND_JOB = """
SELECT a.status, j.id, j.state, j.title, j.instructions, j.annotation, j.items_per_task,
       j.golden_ratio, j.lease_seconds
FROM account a LEFT JOIN job j ON j.id = %(job)s
WHERE a.id = %(worker)s
FOR UPDATE OF a
"""

# Take slots of distinct items the worker has never seen; concurrent leases skip each
# other's rows instead of waiting. Deleted rows leave the queue, so the scan stays short.
TAKE_SLOTS = """
WITH picked AS (
    SELECT s.id, s.item_id, s.round FROM slot s
    WHERE s.job_id = %(job)s
      AND NOT EXISTS (SELECT 1 FROM assignmentitem ai
                      WHERE ai.job_id = %(job)s AND ai.worker_id = %(worker)s AND ai.item_id = s.item_id)
    ORDER BY s.round, s.item_id
    LIMIT %(candidates)s
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT DISTINCT ON (item_id) id, item_id, round FROM picked ORDER BY item_id, round
), taken AS (
    DELETE FROM slot WHERE id IN (SELECT id FROM chosen ORDER BY round, item_id LIMIT %(wanted)s)
    RETURNING item_id, round
)
SELECT item_id, round FROM taken
"""

GOLDEN_SEEN = """
SELECT item_id FROM assignmentitem WHERE job_id = %s AND worker_id = %s AND item_id = ANY(%s)
"""

CREATE_ASSIGNMENT = """
WITH a AS (
    INSERT INTO assignment (job_id, worker_id, state, created_at, expires_at)
    VALUES (%(job)s, %(worker)s, 'leased', %(now)s, %(expires)s)
    RETURNING id
), refs AS (
    INSERT INTO assignmentitem (assignment_id, job_id, worker_id, item_id, round, position)
    SELECT a.id, %(job)s, %(worker)s, e.item_id, e.round, e.position
    FROM a, unnest(%(items)s::bigint[], %(rounds)s::int[], %(positions)s::int[]) AS e(item_id, round, position)
    RETURNING id, assignment_id, item_id, position
)
SELECT refs.assignment_id, refs.id, i.data FROM refs JOIN item i ON i.id = refs.item_id ORDER BY refs.position
"""

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


def cursor(session: Session) -> Any:
    """A cursor on the session's psycopg connection, inside the session's transaction.

    Kept for the rest of the transaction: asking the session for its connection on every
    statement cost about as much as running the statement.
    """
    transaction = session.get_transaction()
    cached = session.info.get("pg_cursor")
    if transaction is not None and cached is not None and cached[0] is transaction:
        return cached[1]
    raw = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    session.info["pg_cursor"] = (session.get_transaction(), raw)
    return raw


def worker_and_job(session: Session, worker_id: int, job_id: int | None) -> tuple[str, Any]:
    row = cursor(session).execute(WORKER_AND_JOB, {"job": job_id, "worker": worker_id}).fetchone()
    return row[0], (row[1:] if row[1] is not None else None)


def take_slots(session: Session, job_id: int, worker_id: int, wanted: int) -> list[tuple[int, int]]:
    params = {"job": job_id, "worker": worker_id, "candidates": wanted * 2, "wanted": wanted}
    return [(r[0], r[1]) for r in cursor(session).execute(TAKE_SLOTS, params).fetchall()]


def golden_seen(session: Session, job_id: int, worker_id: int, candidates: list[int]) -> set[int]:
    return {r[0] for r in cursor(session).execute(GOLDEN_SEEN, (job_id, worker_id, candidates)).fetchall()}


def create_assignment(
    session: Session,
    job_id: int,
    worker_id: int,
    entries: list[tuple[int, int | None]],
    now: datetime,
    expires_at: datetime,
) -> tuple[int, list[dict[str, Any]]]:
    params = {
        "job": job_id,
        "worker": worker_id,
        "now": now,
        "expires": expires_at,
        "items": [e[0] for e in entries],
        "rounds": [e[1] for e in entries],
        "positions": list(range(len(entries))),
    }
    rows = cursor(session).execute(CREATE_ASSIGNMENT, params).fetchall()
    return rows[0][0], [{"id": r[1], "data": r[2]} for r in rows]


def lock_task(session: Session, assignment_id: int) -> list[Any]:
    return cursor(session).execute(LOCK_TASK, (assignment_id,)).fetchall()  # type: ignore[no-any-return]


def store_submit(
    session: Session,
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
    ids, closed, has_slots = cursor(session).execute(STORE_SUBMIT, params).fetchone()
    assert closed == 1
    return list(ids), bool(has_slots)
