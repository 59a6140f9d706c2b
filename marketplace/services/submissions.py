"""The hot path's second half: submit a task's answers once, or skip it.

The assignment row is locked for the whole submit, so a submit and the expiry sweep (or a
retry of the same submit) never both act on it. A submit counts as in time when it arrives
before the deadline; the sweep waits a grace period past the deadline before it reclaims.

A task of golden items only is a qualification test (every other task holds a real item): once
its answers are stored, `graded` grades it (`qualification.grade`), and the result says passed
or failed, nothing about which answers were wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, exists, insert, select, update
from sqlmodel import Session

from marketplace.db import is_postgres
from marketplace.errors import Conflict, Invalid, NotFound
from marketplace.models import Answer, Assignment, AssignmentItem, Item, Job, Slot, utcnow
from marketplace.services import pool_pg, qualification
from marketplace.services.leasing import release_assignments


@dataclass(frozen=True)
class SubmitResult:
    id: int
    state: str
    answers: int
    submitted_at: datetime
    answer_ids: tuple[int, ...] = ()
    job_id: int = 0
    job_finished: bool = False
    replayed: bool = False
    golden: int = 0  # golden answers in this submit: triggers the rules; never shown to workers
    qualification: str | None = None  # a test's outcome: passed or failed

    @property
    def is_test(self) -> bool:
        """Golden items only: a qualification test (a task always holds a real item)."""
        return 0 < self.answers == self.golden


def _locked_assignment(session: Session, worker_id: int, assignment_id: int) -> Assignment:
    assignment = session.execute(
        select(Assignment).where(Assignment.id == assignment_id).with_for_update()
    ).scalar_one_or_none()
    if assignment is None or assignment.worker_id != worker_id:
        raise NotFound(f"assignment {assignment_id} not found")
    return assignment


@dataclass(frozen=True)
class TaskRef:
    id: int
    item_id: int
    round: int | None
    is_golden: bool
    answer: str | None


@dataclass(frozen=True)
class LockedTask:
    """An assignment, locked for this transaction, with its items and the job's labels."""

    worker_id: int
    job_id: int
    state: str
    expires_at: datetime
    idempotency_key: str | None
    finished_at: datetime | None
    labels: list[str]
    refs: dict[int, TaskRef]


def _lock_task(session: Session, worker_id: int, assignment_id: int) -> LockedTask:
    assignment = session.get(Assignment, assignment_id)
    if assignment is None:
        raise NotFound(f"assignment {assignment_id} not found")
    job = session.get(Job, assignment.job_id)
    assert job is not None
    items = session.execute(
        select(AssignmentItem.id, AssignmentItem.item_id, AssignmentItem.round, Item.is_golden, Item.answer)
        .join(Item, Item.id == AssignmentItem.item_id)
        .where(AssignmentItem.assignment_id == assignment_id, Item.job_id == assignment.job_id)
    ).all()
    task = LockedTask(
        assignment.worker_id,
        assignment.job_id,
        assignment.state,
        assignment.expires_at,
        assignment.idempotency_key,
        assignment.finished_at,
        job.annotation["labels"],
        {r[0]: TaskRef(*r) for r in items},
    )
    return _own(task, worker_id, assignment_id)


def _lock_task_pg(cur: Any, worker_id: int, assignment_id: int) -> LockedTask:
    rows = pool_pg.lock_task(cur, assignment_id)
    if not rows:
        raise NotFound(f"assignment {assignment_id} not found")
    head = rows[0]
    refs = {r[7]: TaskRef(*r[7:12]) for r in rows}
    worker, job_id, state, expires_at, key, finished_at = head[:6]
    task = LockedTask(worker, job_id, state, expires_at, key, finished_at, head[6]["labels"], refs)
    return _own(task, worker_id, assignment_id)


def _own(task: LockedTask, worker_id: int, assignment_id: int) -> LockedTask:
    if task.worker_id != worker_id:
        raise NotFound(f"assignment {assignment_id} not found")
    return task


def _replay_or_refuse(
    task: LockedTask, assignment_id: int, idempotency_key: str | None, received_at: datetime
) -> SubmitResult | None:
    """The first result again for a retry of a stored submit; otherwise why it is refused."""
    if task.state == "submitted":
        if idempotency_key and task.idempotency_key == idempotency_key:
            assert task.finished_at is not None
            return SubmitResult(
                assignment_id,
                "submitted",
                len(task.refs),
                task.finished_at,
                job_id=task.job_id,
                replayed=True,
                golden=sum(r.is_golden for r in task.refs.values()),
            )
        raise Conflict("assignment already submitted")
    if task.state != "leased":
        raise Conflict(f"assignment is {task.state}")
    if received_at > task.expires_at:
        raise Conflict("the lease expired before this submit arrived")
    return None


def _answer_rows(
    task: LockedTask, worker_id: int, assignment_id: int, answers: list[dict[str, Any]], received_at: datetime
) -> list[dict[str, Any]]:
    _check_answers(answers, task.refs, task.labels)
    rows = []
    for answer in answers:
        ref = task.refs[answer["item_id"]]
        rows.append(
            {
                "job_id": task.job_id,
                "item_id": ref.item_id,
                "worker_id": worker_id,
                "assignment_id": assignment_id,
                "round": ref.round,
                "label": answer["label"],
                "is_golden": ref.is_golden,
                "correct": (answer["label"] == ref.answer) if ref.is_golden else None,
                "excluded": False,
                "created_at": received_at,
            }
        )
    return rows


def submit(
    session: Session,
    worker_id: int,
    assignment_id: int,
    answers: list[dict[str, Any]],
    idempotency_key: str | None = None,
    received_at: datetime | None = None,
) -> SubmitResult:
    """Store one answer per task item; a retry with the same key returns the first result.

    On PostgreSQL this runs on a connection of its own from the engine's pool, outside the
    session (see `submit_pg`)."""
    if is_postgres(session):
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        return submit_pg(engine, worker_id, assignment_id, answers, idempotency_key, received_at)
    received_at = received_at or utcnow()
    task = _lock_task(session, worker_id, assignment_id)
    replay = _replay_or_refuse(task, assignment_id, idempotency_key, received_at)
    if replay is not None:
        session.commit()
        return replay
    rows = _answer_rows(task, worker_id, assignment_id, answers, received_at)
    answer_ids = list(session.execute(insert(Answer).returning(Answer.id), rows).scalars())
    session.execute(
        update(Assignment)
        .where(Assignment.id == assignment_id)
        .values(state="submitted", finished_at=received_at, idempotency_key=idempotency_key)
    )
    finished = not _pool_has_slots(session, task.job_id) and _job_finished(session, task.job_id)
    session.commit()
    return _stored(assignment_id, received_at, answer_ids, task.job_id, finished, sum(r["is_golden"] for r in rows))


def graded(session: Session, result: SubmitResult, worker_id: int) -> SubmitResult:
    """A submitted (or replayed) qualification test with its outcome, graded now if it was not
    yet, in a transaction of its own once `submit` committed the answers (a stop in between
    leaves it pending, and the worker's next lease of the job grades it); a task as it is."""
    if not result.is_test:
        return result
    outcome = qualification.grade(session, result.job_id, worker_id, result.id, utcnow())
    session.commit()
    return replace(result, qualification=outcome)


def _stored(
    assignment_id: int, at: datetime, answer_ids: list[int], job_id: int, finished: bool, golden: int
) -> SubmitResult:
    """The result of a submit that stored its answers, whichever path stored them."""
    return SubmitResult(
        id=assignment_id,
        state="submitted",
        answers=len(answer_ids),
        submitted_at=at,
        answer_ids=tuple(answer_ids),
        job_id=job_id,
        job_finished=finished,
        golden=golden,
    )


def submit_pg(
    engine: Engine,
    worker_id: int,
    assignment_id: int,
    answers: list[dict[str, Any]],
    idempotency_key: str | None = None,
    received_at: datetime | None = None,
) -> SubmitResult:
    """The same on PostgreSQL, on a raw psycopg connection of the engine's pool, no Session.

    A submit in order is one statement (`pool_pg.SUBMIT`, autocommit); anything else (a
    retry, a late or bad submit) stores nothing there and takes the checking path below, in
    one transaction, for the first result or the precise refusal."""
    received_at = received_at or utcnow()
    with pool_pg.autocommit(engine) as cur:
        stored = pool_pg.submit(cur, assignment_id, worker_id, answers, received_at, idempotency_key)
        if stored is not None:
            job_id, answer_ids, golden, has_slots = stored
            finished = not has_slots and _job_finished_pg(engine, job_id)
            return _stored(assignment_id, received_at, answer_ids, job_id, finished, golden)
    with pool_pg.transaction(engine) as cur:
        task = _lock_task_pg(cur, worker_id, assignment_id)
        replay = _replay_or_refuse(task, assignment_id, idempotency_key, received_at)
        if replay is not None:
            return replay
        rows = _answer_rows(task, worker_id, assignment_id, answers, received_at)
        answer_ids, has_slots = pool_pg.store_submit(
            cur, task.job_id, worker_id, assignment_id, rows, received_at, idempotency_key
        )
        finished = not has_slots and pool_pg.job_finished(cur, task.job_id, utcnow())
    return _stored(assignment_id, received_at, answer_ids, task.job_id, finished, sum(r["is_golden"] for r in rows))


def _job_finished_pg(engine: Engine, job_id: int) -> bool:
    """After a submit that saw the pool empty, in a transaction of its own: of the last
    concurrent submits, the one that locks the job last sees every other one committed."""
    with pool_pg.transaction(engine) as cur:
        return pool_pg.job_finished(cur, job_id, utcnow())


def _check_answers(answers: list[dict[str, Any]], by_ref: dict[int, Any], labels: list[str]) -> None:
    allowed = set(labels)
    for index, answer in enumerate(answers):
        if answer["item_id"] not in by_ref:
            raise Invalid(f"answers.{index}.item_id", "not an item of this task")
        if answer["label"] not in allowed:
            raise Invalid(f"answers.{index}.label", "not one of the labels in the task's annotation")
    missing = sorted(set(by_ref) - {a["item_id"] for a in answers})
    if missing:
        raise Invalid("answers", f"every item of the task needs an answer; missing {missing}")


def _job_finished(session: Session, job_id: int) -> bool:
    """Called once the pool looked empty: no free slots and no open leases means done.

    The job row is locked only once the pool is empty, so that of the last concurrent
    submits one sees the others committed (READ COMMITTED), without serialising the rest.
    """
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update())
    open_leases = exists().where(Assignment.job_id == job_id, Assignment.state == "leased")
    if session.execute(select(open_leases | exists().where(Slot.job_id == job_id))).scalar_one():
        return False
    session.execute(
        update(Job).where(Job.id == job_id, Job.state == "running").values(state="completed", updated_at=utcnow())
    )
    return True


def _pool_has_slots(session: Session, job_id: int) -> bool:
    return bool(session.execute(select(exists().where(Slot.job_id == job_id))).scalar_one())


def skip(session: Session, worker_id: int, assignment_id: int) -> SubmitResult:
    """Give a task back: its real slots return to the pool; the worker won't see them again."""
    assignment = _locked_assignment(session, worker_id, assignment_id)
    if assignment.state != "leased":
        raise Conflict(f"assignment is {assignment.state}")
    now = utcnow()
    release_assignments(session, assignment.job_id, [assignment_id], "skipped", now)
    session.commit()
    return SubmitResult(id=assignment_id, state="skipped", answers=0, submitted_at=now, job_id=assignment.job_id)


def get_assignment(session: Session, worker_id: int, assignment_id: int) -> dict[str, Any]:
    """A worker's own assignment, as it was leased (items and state)."""
    assignment = session.get(Assignment, assignment_id)
    if assignment is None or assignment.worker_id != worker_id:
        raise NotFound(f"assignment {assignment_id} not found")
    job = session.get(Job, assignment.job_id)
    assert job is not None
    rows = session.execute(
        select(AssignmentItem.id, Item.data, Item.is_golden)
        .join(Item, Item.id == AssignmentItem.item_id)
        .where(AssignmentItem.assignment_id == assignment_id, Item.job_id == assignment.job_id)
        .order_by(AssignmentItem.position)
    ).all()
    return {
        "id": assignment.id,
        "kind": "qualification" if rows and all(r.is_golden for r in rows) else "task",
        "state": assignment.state,
        "expires_at": assignment.expires_at,
        "items": [{"id": r.id, "data": r.data} for r in rows],
        "job": {"id": job.id, "title": job.title, "instructions": job.instructions, "annotation": job.annotation},
        "decision": assignment.decision,
        "decision_reason": assignment.decision_reason,
        "paid_cents": assignment.paid_cents,
    }
