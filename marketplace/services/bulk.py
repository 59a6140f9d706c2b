"""Bulk paths for aggregation: COPY answers out, COPY results in.

A 10M-answer job read as SQLAlchemy rows costs minutes and gigabytes of Python tuples; COPY
streams CSV that pandas parses in C, and ids stay integers until the last moment.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete
from sqlmodel import Session

from marketplace.models import WorkerQuality, utcnow

ANSWERS = (
    "COPY (SELECT id, item_id, worker_id, label FROM answer WHERE job_id = {job:d} AND NOT excluded) "
    "TO STDOUT WITH (FORMAT csv)"
)


VALUES = (
    "COPY (SELECT id, item_id, worker_id, value FROM answer WHERE job_id = {job:d} AND NOT excluded) "
    "TO STDOUT WITH (FORMAT csv)"
)


def _raw(session: Session) -> Any:
    return session.connection().connection.driver_connection


def _copy_out(session: Session, statement: str) -> io.BytesIO:
    buffer = io.BytesIO()
    with _raw(session).cursor().copy(statement) as copy:
        for block in copy:
            buffer.write(block)
    buffer.seek(0)
    return buffer


def copy_answers(session: Session, job_id: int) -> tuple[pd.DataFrame, int]:
    """(task, worker, label) as strings, each distinct value one shared object; and the last id."""
    buffer = _copy_out(session, ANSWERS.format(job=int(job_id)))
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({"task": [], "worker": [], "label": []}, dtype=object), 0
    frame = pd.read_csv(
        buffer,
        header=None,
        names=["id", "task", "worker", "label"],
        dtype={"id": np.int64, "task": np.int64, "worker": np.int64, "label": str},
        keep_default_na=False,
    )
    last_id = int(frame["id"].max())
    return pd.DataFrame(
        {
            "task": _shared_strings(frame["task"]),
            "worker": _shared_strings(frame["worker"]),
            "label": _shared_strings(frame["label"]),
        }
    ), last_id


def copy_values(session: Session, job_id: int) -> tuple[pd.DataFrame, int]:
    """Annotation answers as (task, worker, value): ids as strings, values parsed from their
    JSON; and the last answer id."""
    buffer = _copy_out(session, VALUES.format(job=int(job_id)))
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({"task": [], "worker": [], "value": []}, dtype=object), 0
    frame = pd.read_csv(
        buffer,
        header=None,
        names=["id", "task", "worker", "value"],
        dtype={"id": np.int64, "task": np.int64, "worker": np.int64, "value": str},
        keep_default_na=False,
    )
    values = np.empty(len(frame), dtype=object)
    values[:] = [json.loads(v) for v in frame["value"]]
    return pd.DataFrame(
        {"task": _shared_strings(frame["task"]), "worker": _shared_strings(frame["worker"]), "value": values}
    ), int(frame["id"].max())


def _shared_strings(column: pd.Series) -> np.ndarray:
    codes, uniques = pd.factorize(column)
    return np.asarray([str(u) for u in uniques], dtype=object)[codes]


def copy_rows(session: Session, table: str, columns: list[str], frame: pd.DataFrame) -> None:
    """Append a frame's rows to a table with COPY ... FROM STDIN (CSV)."""
    if frame.empty:
        return
    text = frame[columns].to_csv(index=False, header=False, na_rep="")
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
    with _raw(session).cursor().copy(statement) as copy:
        copy.write(text)


QUALITY_COLUMNS = [
    "job_id",
    "worker_id",
    "answers",
    "golden_seen",
    "golden_correct",
    "golden_score",
    "golden_accuracy",
    "agreement",
    "updated_at",
]


def replace_quality(session: Session, job_id: int, frame: pd.DataFrame) -> None:
    """The job's worker quality rows replaced by `frame` (indexed by worker id, with the figures
    of `QUALITY_COLUMNS` but the job, worker and time)."""
    frame = frame.assign(worker_id=frame.index.astype(np.int64), job_id=job_id, updated_at=utcnow())
    session.execute(delete(WorkerQuality).where(WorkerQuality.job_id == job_id))
    copy_rows(session, WorkerQuality.__tablename__, QUALITY_COLUMNS, frame[QUALITY_COLUMNS].reset_index(drop=True))
