"""Submit a task's answers once, or skip it; read one's own task back.

A classification submit in order is one statement (`SUBMIT`, autocommit). Anything else (a
retry, a late or bad submit) stores nothing there and takes the checking path, in one
transaction with the assignment row locked, for the first result or the precise refusal
(`refusals.py`). Annotation answers (label sets, boxes, polygons, keypoints) always take the
checking path: each object is checked against the item's image size in Python (shapely for
polygons) before anything is stored. A submit counts as in time when it arrives before the
deadline; reclaiming waits a grace period past it.

Golden answers of a classification are marked `correct` as they are stored; golden annotation
answers are stored unscored, like every other answer, and scored off the submit
(`services/scoring.py`), so a submit does the same work whether it holds golden items or not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from marketplace.errors import NotFound
from marketplace.models import AssignmentState, utcnow
from marketplace.pool import refusals
from marketplace.pool.connection import Statement, autocommit, fetch_all, fetch_one, transaction
from marketplace.pool.refusals import TaskEntry
from marketplace.settings import AnnotationSpec


@dataclass(frozen=True)
class SubmitResult:
    id: int
    state: AssignmentState
    answers: int
    submitted_at: datetime | None
    answer_ids: tuple[int, ...] = ()
    job_id: int = 0
    job_finished: bool = False
    replayed: bool = False
    golden: int = 0  # golden answers in this submit: never shown to workers
    qualification: str | None = None  # a test's outcome: passed or failed

    @property
    def is_test(self) -> bool:
        """Golden items only: a qualification test (a task always holds a real item)."""
        return 0 < self.answers == self.golden


# The whole submit in one statement, for a submit in order: the assignment is the worker's,
# leased, not past its deadline, and the answers name each of its entries once with a label of
# the job's. Anything else changes nothing and returns no row. The UPDATE locks the assignment
# row and re-checks its state once a concurrent submit of it commits. The state and deadline
# test is wrapped in IS TRUE so that the planner finds the row by its primary key, not by
# walking `ix_assignment_open` (every open lease); the pool test is a scalar subquery so that it
# reads the queue index from its far end (an EXISTS became a heap scan through the consumed
# slots at the front).
SUBMIT = Statement.of("""
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
      AND j.annotation ->> 'type' = 'classification'
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
SELECT c.job_id, (SELECT array_agg(id) FROM stored) AS answer_ids,
       (SELECT count(*) FROM stored WHERE is_golden) AS golden,
       (SELECT 1 FROM slot WHERE job_id = c.job_id ORDER BY job_id DESC, round DESC, item_id DESC LIMIT 1) IS NOT NULL
           AS pool_has_slots
FROM closed c
""")


@dataclass(frozen=True)
class SubmitRow:
    job_id: int
    answer_ids: list[int]
    golden: int
    pool_has_slots: bool


LOCK_TASK = Statement.of("""
SELECT a.worker_id, a.job_id, a.state, a.expires_at, a.idempotency_key, a.finished_at, j.annotation,
       ai.id AS ref, ai.item_id, ai.round, i.is_golden, i.answer, i.data
FROM assignment a
JOIN job j ON j.id = a.job_id
JOIN assignmentitem ai ON ai.assignment_id = a.id
JOIN item i ON i.id = ai.item_id
WHERE a.id = %(assignment)s
FOR UPDATE OF a
""")


@dataclass(frozen=True)
class LockedEntryRow:
    worker_id: int
    job_id: int
    state: str
    expires_at: datetime
    idempotency_key: str | None
    finished_at: datetime | None
    annotation: dict[str, Any]
    ref: int
    item_id: int
    round: int | None
    is_golden: bool
    answer: str | None
    data: dict[str, Any]


# The checking path's store: the answers (checked in Python), and the assignment closed.
STORE_SUBMIT = Statement.of("""
WITH stored AS (
    INSERT INTO answer (job_id, item_id, worker_id, assignment_id, round, label, value, is_golden, correct,
                        excluded, created_at)
    SELECT %(job)s, e.item_id, %(worker)s, %(assignment)s, e.round, e.label, e.value::json, e.is_golden, e.correct,
           false, %(now)s
    FROM unnest(%(items)s::bigint[], %(rounds)s::int[], %(labels)s::varchar[], %(values)s::text[], %(golden)s::bool[],
                %(correct)s::bool[]) AS e(item_id, round, label, value, is_golden, correct)
    RETURNING id
), closed AS (
    UPDATE assignment SET state = 'submitted', finished_at = %(now)s, idempotency_key = %(key)s
    WHERE id = %(assignment)s
    RETURNING id
)
SELECT (SELECT array_agg(id) FROM stored) AS answer_ids, (SELECT count(*) FROM closed) AS closed,
       EXISTS (SELECT 1 FROM slot WHERE job_id = %(job)s ORDER BY job_id DESC, round DESC, item_id DESC LIMIT 1)
           AS pool_has_slots
""")


@dataclass(frozen=True)
class StoredRow:
    answer_ids: list[int]
    closed: int
    pool_has_slots: bool


JOB_FINISHED_LOCK = Statement.of("SELECT id FROM job WHERE id = %(job)s FOR UPDATE")

# Run after the job row is locked, in a statement of its own: its snapshot then sees every
# submit that committed before the lock was granted.
JOB_FINISHED = Statement.of("""
WITH done AS (
    SELECT NOT EXISTS (SELECT 1 FROM assignment WHERE job_id = %(job)s AND state = 'leased')
       AND NOT EXISTS (SELECT 1 FROM slot WHERE job_id = %(job)s) AS finished
), completed AS (
    UPDATE job SET state = 'completed', updated_at = %(now)s
    WHERE id = %(job)s AND state = 'running' AND (SELECT finished FROM done)
    RETURNING id
)
SELECT finished FROM done
""")


@dataclass(frozen=True)
class FinishedRow:
    finished: bool


@dataclass(frozen=True)
class IdRow:
    id: int


def submit(
    engine: Engine,
    worker_id: int,
    assignment_id: int,
    answers: list[dict[str, Any]],
    idempotency_key: str | None = None,
    received_at: datetime | None = None,
) -> SubmitResult:
    """Store one answer per task item, once; a retry with the same key returns the first result."""
    received_at = received_at or utcnow()
    if all("label" in a for a in answers):  # a classification's: one statement when in order
        params = {
            "assignment": assignment_id,
            "worker": worker_id,
            "now": received_at,
            "key": idempotency_key,
            "refs": [a["item_id"] for a in answers],
            "labels": [a["label"] for a in answers],
        }
        with autocommit(engine) as cur:
            row: SubmitRow | None = fetch_one(cur, SubmitRow, SUBMIT, params)
        if row is not None:
            finished = not row.pool_has_slots and _job_finished_apart(engine, row.job_id)
            return _stored(assignment_id, received_at, row.answer_ids, row.job_id, finished, row.golden)
    with transaction(engine) as cur:
        task = _lock_task(cur, worker_id, assignment_id)
        replay = refusals.replay_or_refuse(task, assignment_id, idempotency_key, received_at)
        if replay is not None:
            return SubmitResult(
                assignment_id,
                AssignmentState.SUBMITTED,
                replay.answers,
                replay.submitted_at,
                job_id=task.job_id,
                replayed=True,
                golden=replay.golden,
            )
        rows = refusals.checked_answers(task, answers)
        stored: StoredRow = fetch_one(
            cur,
            StoredRow,
            STORE_SUBMIT,
            {
                "job": task.job_id,
                "worker": worker_id,
                "assignment": assignment_id,
                "now": received_at,
                "key": idempotency_key,
                "items": [r.item_id for r in rows],
                "rounds": [r.round for r in rows],
                "labels": [r.label for r in rows],
                "values": [None if r.value is None else json.dumps(r.value, separators=(",", ":")) for r in rows],
                "golden": [r.is_golden for r in rows],
                "correct": [r.correct for r in rows],
            },
        )
        assert stored.closed == 1
        finished = not stored.pool_has_slots and _job_finished(cur, task.job_id)
    golden = sum(r.is_golden for r in rows)
    return _stored(assignment_id, received_at, stored.answer_ids, task.job_id, finished, golden)


def _lock_task(cur: Any, worker_id: int, assignment_id: int) -> refusals.LockedTask:
    rows: list[LockedEntryRow] = fetch_all(cur, LockedEntryRow, LOCK_TASK, {"assignment": assignment_id})
    if not rows or rows[0].worker_id != worker_id:
        raise NotFound(f"assignment {assignment_id} not found")
    head = rows[0]
    return refusals.LockedTask(
        job_id=head.job_id,
        state=head.state,
        expires_at=head.expires_at,
        idempotency_key=head.idempotency_key,
        finished_at=head.finished_at,
        spec=AnnotationSpec.load(head.annotation),
        entries={r.ref: TaskEntry(r.ref, r.item_id, r.round, r.is_golden, r.answer, r.data) for r in rows},
    )


def _stored(
    assignment_id: int, at: datetime, answer_ids: list[int], job_id: int, finished: bool, golden: int
) -> SubmitResult:
    return SubmitResult(
        id=assignment_id,
        state=AssignmentState.SUBMITTED,
        answers=len(answer_ids),
        submitted_at=at,
        answer_ids=tuple(answer_ids),
        job_id=job_id,
        job_finished=finished,
        golden=golden,
    )


def _job_finished(cur: Any, job_id: int) -> bool:
    """No free slots and no open leases: the job is done (marked completed if running). Called
    once the pool looked empty; the job row is locked only then, so that of the last concurrent
    submits the one that locks it last sees every other one committed (READ COMMITTED)."""
    fetch_one(cur, IdRow, JOB_FINISHED_LOCK, {"job": job_id})
    row: FinishedRow = fetch_one(cur, FinishedRow, JOB_FINISHED, {"job": job_id, "now": utcnow()})
    return row.finished


def _job_finished_apart(engine: Engine, job_id: int) -> bool:
    with transaction(engine) as cur:
        return _job_finished(cur, job_id)
