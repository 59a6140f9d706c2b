"""Results per real item (paginated by item id), exports, and per-worker quality.

A result row of an annotation job carries the fused value in the field a worker answers with
(`objects`, each with its `score` and `n`, or `labels`) where a classification's carries
`label`: null while the item is not aggregated, an empty list when the workers agree there is
nothing to draw (or no label applies).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from marketplace.models import Aggregate, AggregationRun, Item, WorkerQuality
from marketplace.services.quality import raw_share

RESULT_FIELDS = ("item_id", "key", "data", "label", "confidence", "method", "version", "answers")


def result_fields(answer_field: str = "label") -> tuple[str, ...]:
    """A result row's fields: the aggregate in the field a worker answers with."""
    return tuple(answer_field if name == "label" else name for name in RESULT_FIELDS)


def results_page(
    session: Session, job_id: int, after: int, limit: int, answer_field: str = "label"
) -> tuple[list[dict[str, Any]], int | None]:
    """Real items with id > `after`, their aggregate if any; keyset pagination by item id.
    `answer_field`: where the aggregate goes (`AnnotationSpec.answer_field` of the job)."""
    rows = session.execute(
        select(
            Item.id,
            Item.key,
            Item.data,
            Aggregate.label,
            Aggregate.value,
            Aggregate.confidence,
            Aggregate.method,
            Aggregate.version,
            Aggregate.answers,
        )
        .outerjoin(Aggregate, (Aggregate.job_id == Item.job_id) & (Aggregate.item_id == Item.id))
        .where(Item.job_id == job_id, Item.is_golden.is_(False), Item.id > after)
        .order_by(Item.id)
        .limit(limit + 1)
    ).all()
    page = [_row(r, answer_field) for r in rows[:limit]]
    next_after = page[-1]["item_id"] if len(rows) > limit else None
    return page, next_after


def _row(r: Any, answer_field: str) -> dict[str, Any]:
    """One result: the item as uploaded (id, key, data) beside its aggregate, so that a result
    file stands on its own."""
    aggregate = r.label if answer_field == "label" else (None if r.value is None else r.value[answer_field])
    return {
        "item_id": r.id,
        "key": r.key,
        "data": r.data,
        answer_field: aggregate,
        "confidence": r.confidence,
        "method": r.method,
        "version": r.version,
        "answers": r.answers or 0,
    }


def iter_results(
    session: Session, job_id: int, answer_field: str = "label", batch: int = 5000
) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        page, next_after = results_page(session, job_id, after, batch, answer_field)
        yield from page
        if next_after is None:
            return
        after = next_after


def export_jsonl(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row) + "\n"


def export_csv(rows: Iterator[dict[str, Any]], answer_field: str = "label") -> Iterator[str]:
    """CSV with the item's data (and an annotation job's objects or labels) as JSON text."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=result_fields(answer_field))
    writer.writeheader()
    for row in rows:
        encoded = {name: json.dumps(row[name], separators=(",", ":")) for name in ("data", answer_field)}
        if answer_field == "label" or row[answer_field] is None:
            encoded[answer_field] = row[answer_field]
        writer.writerow({**row, **encoded})
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def worker_quality(session: Session, job_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(WorkerQuality).where(WorkerQuality.job_id == job_id).order_by(WorkerQuality.worker_id)
    ).scalars()
    return [{"worker_id": q.worker_id, **_quality(q)} for q in rows]


def _quality(q: WorkerQuality) -> dict[str, Any]:
    """A worker's figures on a job as of the last aggregation: golden accuracy raw (the mean
    golden score), and the stored (smoothed) estimate under its own name."""
    credit = q.golden_correct if q.golden_score is None else q.golden_score
    return {
        "answers": q.answers,
        "golden_seen": q.golden_seen,
        "golden_correct": q.golden_correct,
        "golden_accuracy": raw_share(credit, q.golden_seen),
        "golden_accuracy_smoothed": None if q.golden_accuracy is None else round(q.golden_accuracy, 4),
        "agreement": q.agreement,
    }


def quality_summary(session: Session, job_id: int) -> dict[str, Any]:
    """Workers, their mean golden accuracy, and how much they agree as of the last aggregation
    (`AggregationRun.agreement`: Krippendorff's alpha for labels, the mean pairwise IoU or OKS
    of matched objects for geometry; null before the first aggregation)."""
    rows = worker_quality(session, job_id)
    scored = [r["golden_accuracy"] for r in rows if r["golden_accuracy"] is not None]
    agreement = session.execute(
        select(AggregationRun.agreement)
        .where(AggregationRun.job_id == job_id)
        .order_by(AggregationRun.id.desc())
        .limit(1)
    ).scalar()
    return {
        "workers": len(rows),
        "mean_golden_accuracy": round(sum(scored) / len(scored), 4) if scored else None,
        "agreement": agreement,
    }


def worker_quality_of(session: Session, worker_id: int) -> list[dict[str, Any]]:
    """A worker's quality per job, as of the last aggregation (operators' view)."""
    rows = session.execute(
        select(WorkerQuality).where(WorkerQuality.worker_id == worker_id).order_by(WorkerQuality.job_id)
    ).scalars()
    return [{"job_id": q.job_id, **_quality(q)} for q in rows]


def own_quality(session: Session, worker_id: int) -> list[dict[str, Any]]:
    """What a worker sees of its quality per job: its answers and its agreement with the
    aggregate, no golden counts (those move right after a task that held a golden item;
    `quality.settled_golden` is the worker's own golden figure)."""
    return [
        {"job_id": q["job_id"], "answers": q["answers"], "agreement": q["agreement"]}
        for q in worker_quality_of(session, worker_id)
    ]
