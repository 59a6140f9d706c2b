"""Annotation answers scored in [0, 1] against a reference: golden answers against the known
answer (off the submit), and any answer against the job's aggregate (agreement).

`aggregation.geometry.score_answer` does the scoring: boxes and polygons by matching to the gold
objects (Hungarian on IoU among objects of the same label, a match needs the job's
`iou_threshold`) as the F1 of the matches times their mean IoU; keypoints the same on OKS;
label sets by Jaccard. A golden answer is `correct` when its score reaches `PASS_SCORE` (what
`acceptance.reject_failed_golden` counts as failed is below it); golden accuracy is the mean
score everywhere (`quality.golden_credit`), so rules, bans, qualification, bonuses and
acceptance read annotation jobs as they read classifications.

Scoring runs where golden figures are read (the rules checks that follow the submits, the
aggregation, acceptance, a qualification test's grading), never inside a task's submit: a
submit does the same work whether it holds golden items or not (invariant 3).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, select
from sqlmodel import Session

from aggregation.geometry import score_answer
from marketplace.answer_checks import image_size
from marketplace.models import Aggregate, Answer, Item, Job
from marketplace.pool import scores

PASS_SCORE = 0.5


def spec_for(annotation: dict[str, Any], data: Any) -> dict[str, Any]:
    """The job's annotation with the item's image size (OKS falls back to the image's area)."""
    size = image_size(data)
    return annotation if size is None else {**annotation, "width": size[0], "height": size[1]}


def score(annotation: dict[str, Any], value: dict[str, Any], reference: dict[str, Any], data: Any) -> float:
    """An annotation answer against a reference value (the gold, or the aggregate), in [0, 1]."""
    return float(score_answer(annotation["type"], value, reference, spec_for(annotation, data)))


def score_pending(session: Session, job_id: int, assignment_id: int | None = None) -> int:
    """Score the job's golden annotation answers not scored yet (of one assignment when given);
    how many were scored. Cheap when there are none (a partial index holds only those)."""
    query = (
        select(Answer.id, Answer.value, Item.gold, Item.data)
        .join(Item, Item.id == Answer.item_id)
        .where(
            Answer.job_id == job_id,
            Answer.is_golden,  # as the partial index `ix_answer_unscored` says it
            Answer.correct.is_(None),
            Answer.value.is_not(None),
            Item.gold.is_not(None),
        )
        .order_by(Answer.id)
    )
    if assignment_id is not None:
        query = query.where(Answer.assignment_id == assignment_id)
    rows = session.execute(query).all()
    if not rows:
        return 0
    annotation = session.execute(select(Job.annotation).where(Job.id == job_id)).scalar_one()
    scored = []
    for row in rows:
        value = score(annotation, row.value, row.gold, row.data)
        scored.append((row.id, value, value >= PASS_SCORE))
    return scores.record(session, job_id, scored)


def agreement_with_aggregates(session: Session, job_id: int, worker_ids: list[int]) -> dict[int, tuple[int, float]]:
    """Per worker (those with any): (answers compared, their agreement summed) for its real
    answers on aggregated items: a label agrees (1) with the aggregate's label or not (0); an
    annotation answer adds its score against the aggregate's value (fused objects or label
    set). One grouped query for all the workers: one a worker joined the job's aggregates once
    per worker, and a rules check of a busy job's crowd spent seconds there."""
    if not worker_ids:
        return {}
    on_aggregate = and_(Aggregate.job_id == Answer.job_id, Aggregate.item_id == Answer.item_id)
    mine = and_(Answer.job_id == job_id, Answer.worker_id.in_(worker_ids), Answer.is_golden.is_(False))
    labels = session.execute(
        select(Answer.worker_id, func.count(), func.sum(case((Aggregate.label == Answer.label, 1), else_=0)))
        .select_from(Answer)
        .join(Aggregate, on_aggregate)
        .where(mine, Answer.label.is_not(None))
        .group_by(Answer.worker_id)
    ).all()
    figures = {int(worker): (int(compared), float(agreed or 0)) for worker, compared, agreed in labels}
    rows = session.execute(
        select(Answer.worker_id, Answer.value, Aggregate.value.label("reference"), Item.data)
        .select_from(Answer)
        .join(Aggregate, on_aggregate)
        .join(Item, Item.id == Answer.item_id)
        .where(mine, Answer.value.is_not(None), Aggregate.value.is_not(None))
    ).all()
    if rows:
        annotation = session.execute(select(Job.annotation).where(Job.id == job_id)).scalar_one()
        for row in rows:
            compared, agreed = figures.get(row.worker_id, (0, 0.0))
            figures[row.worker_id] = (compared + 1, agreed + score(annotation, row.value, row.reference, row.data))
    return figures
