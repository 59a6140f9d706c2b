"""Golden annotation answers' scores, written once they are computed (`services/scoring.py`).

A golden answer of a classification is marked `correct` as it is stored; the other types are
scored off the submit, so that a submit does the same work whether it holds golden items or
not (invariant 3), and written here: only answers not scored yet, so a second run writes
nothing.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

RECORD = text(
    """
UPDATE answer a SET score = s.score, correct = s.correct
FROM unnest(CAST(:ids AS bigint[]), CAST(:scores AS float8[]), CAST(:correct AS bool[])) AS s(id, score, correct)
WHERE a.id = s.id AND a.job_id = :job AND a.is_golden AND a.correct IS NULL
"""
)


def record(session: Session, job_id: int, scores: list[tuple[int, float, bool]]) -> int:
    """Write (answer id, score, correct) for golden answers of the job still unscored; how many."""
    if not scores:
        return 0
    ids, values, correct = (list(column) for column in zip(*scores, strict=True))
    result = session.execute(RECORD, {"ids": ids, "scores": values, "correct": correct, "job": job_id})
    return int(result.rowcount)  # type: ignore[attr-defined]
