"""Why a submit is refused, or which first result a retry gets: the rules of the checking path
(`submit.py`). The one-statement submit applies the same rules in SQL and, when any fails,
stores nothing and leaves the answer to these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marketplace.errors import Conflict, Invalid
from marketplace.models import AssignmentState


@dataclass(frozen=True)
class TaskEntry:
    ref: int  # what the worker sees as the item's id
    item_id: int
    round: int | None  # None for golden items
    is_golden: bool
    answer: str | None  # golden items only


@dataclass(frozen=True)
class LockedTask:
    """An assignment, locked for this transaction, with its entries and the job's labels."""

    job_id: int
    state: str
    expires_at: datetime
    idempotency_key: str | None
    finished_at: datetime | None
    labels: list[str]
    entries: dict[int, TaskEntry]


@dataclass(frozen=True)
class Replay:
    """A stored submit's first result, for a retry with its key."""

    answers: int
    golden: int
    submitted_at: datetime | None


@dataclass(frozen=True)
class AnswerRow:
    item_id: int
    round: int | None
    label: str
    is_golden: bool
    correct: bool | None


def replay_or_refuse(
    task: LockedTask, assignment_id: int, idempotency_key: str | None, received_at: datetime
) -> Replay | None:
    """The first result again for a retry of a stored submit; a Conflict for a task that cannot
    take this submit; None when it may be stored."""
    if task.state == AssignmentState.SUBMITTED:
        if idempotency_key and task.idempotency_key == idempotency_key:
            golden = sum(e.is_golden for e in task.entries.values())
            return Replay(len(task.entries), golden, task.finished_at)
        raise Conflict("assignment already submitted")
    if task.state != AssignmentState.LEASED:
        raise Conflict(f"assignment is {task.state}")
    if received_at > task.expires_at:
        raise Conflict("the lease expired before this submit arrived")
    return None


def checked_answers(task: LockedTask, answers: list[dict[str, Any]]) -> list[AnswerRow]:
    """The rows to store, once every answer names an entry of the task with one of the job's
    labels and every entry has one; otherwise an Invalid naming the first bad field."""
    allowed = set(task.labels)
    for index, answer in enumerate(answers):
        if answer["item_id"] not in task.entries:
            raise Invalid(f"answers.{index}.item_id", "not an item of this task")
        if answer["label"] not in allowed:
            raise Invalid(f"answers.{index}.label", "not one of the labels in the task's annotation")
    missing = sorted(set(task.entries) - {a["item_id"] for a in answers})
    if missing:
        raise Invalid("answers", f"every item of the task needs an answer; missing {missing}")
    rows = []
    for answer in answers:
        entry = task.entries[answer["item_id"]]
        correct = (answer["label"] == entry.answer) if entry.is_golden else None
        rows.append(AnswerRow(entry.item_id, entry.round, answer["label"], entry.is_golden, correct))
    return rows
