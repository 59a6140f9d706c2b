"""Why a submit is refused, or which first result a retry gets: the rules of the checking path
(`submit.py`). The one-statement submit applies the same rules in SQL and, when any fails,
stores nothing and leaves the answer to these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marketplace import answer_checks
from marketplace.errors import Conflict, Invalid
from marketplace.models import AssignmentState
from marketplace.settings import CLASSIFICATION, AnnotationSpec

ANSWER_FIELDS = ("label", "labels", "objects")


@dataclass(frozen=True)
class TaskEntry:
    ref: int  # what the worker sees as the item's id
    item_id: int
    round: int | None  # None for golden items
    is_golden: bool
    answer: str | None  # golden classification items only
    data: dict[str, Any]  # the item's data (its image's size)


@dataclass(frozen=True)
class LockedTask:
    """An assignment, locked for this transaction, with its entries and the job's annotation."""

    job_id: int
    state: str
    expires_at: datetime
    idempotency_key: str | None
    finished_at: datetime | None
    spec: AnnotationSpec
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
    label: str | None  # a classification's answer
    value: dict[str, Any] | None  # any other type's (`answer_checks.check_value`)
    is_golden: bool
    correct: bool | None  # golden classification answers; annotation answers are scored later


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
    """The rows to store, once every answer names an entry of the task, answers it the way the
    job's annotation asks (a label of the job's; a label set or objects passing
    `answer_checks`) and every entry has one; otherwise an Invalid naming the first bad place."""
    spec = task.spec
    allowed = set(spec.labels)
    values: list[dict[str, Any] | None] = []
    for index, answer in enumerate(answers):
        if answer["item_id"] not in task.entries:
            raise Invalid(f"answers.{index}.item_id", "not an item of this task")
        field = next(name for name in ANSWER_FIELDS if name in answer)
        if field != spec.answer_field:
            raise Invalid(
                f"answers.{index}.{field}", f"the items of a {spec.kind} job are answered with {spec.answer_field}"
            )
        if spec.kind == CLASSIFICATION:
            if answer["label"] not in allowed:
                raise Invalid(f"answers.{index}.label", "not one of the labels in the task's annotation")
            values.append(None)
        else:
            size = answer_checks.image_size(task.entries[answer["item_id"]].data)
            values.append(answer_checks.check_value(spec, {field: answer[field]}, size, f"answers.{index}"))
    missing = sorted(set(task.entries) - {a["item_id"] for a in answers})
    if missing:
        raise Invalid("answers", f"every item of the task needs an answer; missing {missing}")
    rows = []
    for answer, value in zip(answers, values, strict=True):
        entry = task.entries[answer["item_id"]]
        label = answer.get("label") if value is None else None
        correct = (label == entry.answer) if entry.is_golden and value is None else None
        rows.append(AnswerRow(entry.item_id, entry.round, label, value, entry.is_golden, correct))
    return rows
