"""Jobs: creation, items, state changes, progress. Ownership is checked here, once."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from marshmallow import ValidationError
from sqlalchemy import and_, exists, func, or_, select
from sqlmodel import Session

from marketplace import answer_checks
from marketplace.auth import Principal
from marketplace.config import DEFAULTS
from marketplace.errors import Conflict, Invalid, NotFound
from marketplace.models import (
    Account,
    AccountStatus,
    Aggregate,
    AggregationRun,
    Answer,
    Assignment,
    AssignmentItem,
    AssignmentState,
    AuditEvent,
    Item,
    Job,
    JobState,
    Qualification,
    QualificationState,
    Role,
    Slot,
    WorkerBlock,
    utcnow,
)
from marketplace.pool import slots
from marketplace.pool.release import release_assignments
from marketplace.schemas import check_dynamic_overlap, check_method
from marketplace.services import acceptance, budget, pricing
from marketplace.services import items as item_service
from marketplace.services.bulk import copy_rows
from marketplace.services.golden import supply as golden_supply
from marketplace.settings import CLASSIFICATION, AcceptanceRules, AnnotationSpec, Bonus, Pricing, QualificationSettings

DEFAULT_MAX_ANSWERS = int(DEFAULTS["MAX_JOB_ANSWERS"])
TRANSITIONS = {
    "launch": ({JobState.DRAFT, JobState.PAUSED}, JobState.RUNNING),
    "pause": ({JobState.RUNNING}, JobState.PAUSED),
    "cancel": ({JobState.DRAFT, JobState.RUNNING, JobState.PAUSED}, JobState.CANCELLED),
}


def create_job(
    session: Session, requester_id: int, fields: dict[str, Any], currency: str, limits: acceptance.Limits
) -> Job:
    fields = dict(fields)
    prices = Pricing.load(fields.pop("pricing", None), fields.pop("reward_cents", None))
    kind = fields["annotation"]["type"]
    acceptance.check_limits(AcceptanceRules.load(fields.get("acceptance")), limits)
    job = Job(
        requester_id=requester_id,
        pricing=prices.stored(),
        reward_cents=prices.item_pay_max(kind),  # the most an item pays before any bonus
        item_hold_cents=pricing.item_hold(prices, Bonus.load(fields.get("bonus")), kind),
        currency=currency,
        **fields,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, principal: Principal, job_id: int, *, lock: bool = False) -> Job:
    """The job if the caller may see it: its requester or an operator; 404 otherwise."""
    query = select(Job).where(Job.id == job_id)
    if lock:
        query = query.with_for_update()
    job = session.execute(query).scalar_one_or_none()
    if job is None or (principal.role != Role.OPERATOR and job.requester_id != principal.id):
        raise NotFound(f"job {job_id} not found")
    return job


def add_items(
    session: Session, job: Job, items: list[dict[str, Any]], max_answers: int = DEFAULT_MAX_ANSWERS
) -> dict[str, Any]:
    """Insert items in one transaction; golden ones carry `answer`. Answers each item's id and
    key in the order the items were sent.

    Ids are drawn from the sequence and handed out shuffled, so that they say nothing about which
    items are golden (however the requester ordered them); the rows go in with one COPY. On a
    running job the new real items enter the pool at once.
    """
    if job.state not in (JobState.DRAFT, JobState.RUNNING, JobState.PAUSED):
        raise Conflict(f"cannot add items to a {job.state} job")
    real = sum(1 for item in items if "answer" not in item)
    slots.check_size(session, job, max_answers, new_items=real, field="_body")
    golden = check_items(AnnotationSpec.load(job.annotation), items)
    keys: list[str | None] = [item.get("key") for item in items]
    item_service.check_new_keys(session, job.id, keys)
    ids = item_service.new_ids(session, len(items))
    now = utcnow().isoformat()
    rows = pd.DataFrame(
        {
            "id": ids,
            "job_id": job.id,
            "key": item_service.final_keys(session, job.id, keys, ids),
            "data": [json.dumps(item["data"], separators=(",", ":")) for item in items],
            "is_golden": ["answer" in item for item in items],
            "answer": [g if isinstance(g, str) else None for g in golden],
            "gold": [json.dumps(g, separators=(",", ":")) if isinstance(g, dict) else None for g in golden],
            "created_at": now,
        }
    )
    copy_rows(session, "item", list(rows.columns), rows)  # COPY: linear, ~10x an INSERT's speed
    real_ids = [ids[index] for index, item in enumerate(items) if "answer" not in item]
    if job.state != JobState.DRAFT and real_ids:
        slots.fill_new(session, job, real_ids)
        slots.follow_pool(session, job)
    return {
        "added": len(ids),
        "golden": len(ids) - len(real_ids),
        "items": [
            {"id": item_id, "key": key if key is not None else str(item_id)}
            for item_id, key in zip(ids, keys, strict=True)
        ],
    }


def check_items(spec: AnnotationSpec, items: list[dict[str, Any]]) -> list[str | dict[str, Any] | None]:
    """Each item's known answer as stored (a label, or an annotation value), None for a real
    item; Invalid naming the index of the first item that the job's annotation refuses: a
    geometry item without its image's size, a golden answer a worker could not give."""
    golden: list[str | dict[str, Any] | None] = []
    for index, item in enumerate(items):
        answer_checks.check_item_data(spec, item["data"], str(index))
        answer = item.get("answer")
        if answer is None:
            golden.append(None)
        elif spec.kind == CLASSIFICATION:
            if answer not in spec.labels:
                raise Invalid(f"{index}.answer", "not one of the job's labels")
            golden.append(answer)
        else:
            size = answer_checks.image_size(item["data"])
            golden.append(answer_checks.check_value(spec, answer, size, f"{index}.answer"))
    return golden


def change_state(session: Session, job: Job, action: str, actor_id: int | None = None) -> Job:
    allowed, target = TRANSITIONS[action]
    if job.state not in allowed:
        raise Conflict(f"cannot {action} a {job.state} job")
    if action == "launch":
        _launch(session, job, actor_id)
    job.state = target
    job.updated_at = utcnow()
    if action == "cancel":
        _cancel(session, job)
    if action == "launch":
        slots.follow_pool(session, job)  # a paused job whose last work ended meanwhile is done
    session.add(job)
    session.flush()
    return job


def _launch(session: Session, job: Job, actor_id: int | None) -> None:
    """Fill the pool (first launch) and hold the budget: the job can spend nothing else."""
    real = session.execute(select(func.count()).where(Item.job_id == job.id, Item.is_golden.is_(False))).scalar_one()
    if real == 0:
        raise Conflict("a job needs at least one real item to launch")
    if job.item_hold_cents > 0 and job.budget_cents < budget.task_worst_case(job):
        raise Invalid("budget_cents", f"a paid job needs a budget of at least one task ({budget.task_worst_case(job)})")
    if job.qualification is not None and _golden_short(session, job.id, job.qualification):
        raise Conflict(f"the qualification needs at least {job.qualification['items']} golden items")
    if job.state == JobState.DRAFT:
        slots.fill_new(session, job)
    job.state = JobState.RUNNING
    budget.apply_budget(session, job, actor_id)


def _cancel(session: Session, job: Job) -> None:
    """Revoke open leases and empty the pool: nothing more is issued; the unspent budget goes
    back to the requester (holds of submitted work follow once it is decided)."""
    open_leases = session.execute(
        select(Assignment.id).where(Assignment.job_id == job.id, Assignment.state == AssignmentState.LEASED)
    ).scalars()
    release_assignments(session, job.id, list(open_leases), AssignmentState.REVOKED, utcnow())
    slots.clear(session, job.id)
    budget.refund_rest(session, job)


def progress(session: Session, job: Job) -> dict[str, Any]:
    """Counts a requester watches; each an indexed count on job_id."""
    job_id = job.id

    def count(query: Any) -> int:
        return int(session.execute(query).scalar_one())

    items = count(select(func.count()).where(Item.job_id == job_id, Item.is_golden.is_(False)))
    golden = count(select(func.count()).where(Item.job_id == job_id, Item.is_golden.is_(True)))
    included = Answer.excluded.is_(False)
    answers = count(select(func.count()).where(Answer.job_id == job_id, Answer.is_golden.is_(False), included))
    golden_answers = count(select(func.count()).where(Answer.job_id == job_id, Answer.is_golden.is_(True), included))
    excluded = count(select(func.count()).where(Answer.job_id == job_id, Answer.excluded.is_(True)))
    free = count(select(func.count()).where(Slot.job_id == job_id))
    open_leases = count(
        select(func.count()).where(Assignment.job_id == job_id, Assignment.state == AssignmentState.LEASED)
    )
    leased_slots = count(
        select(func.count())
        .select_from(AssignmentItem)
        .join(Assignment, Assignment.id == AssignmentItem.assignment_id)
        .where(
            AssignmentItem.job_id == job_id,
            Assignment.state == AssignmentState.LEASED,
            AssignmentItem.round.is_not(None),
        )
    )
    aggregated = count(select(func.count()).where(Aggregate.job_id == job_id))
    run = session.execute(
        select(AggregationRun).where(AggregationRun.job_id == job_id).order_by(AggregationRun.id.desc()).limit(1)
    ).scalar_one_or_none()
    wanted = items * job.overlap
    budget_view = budget.status(session, job)
    return {
        "items": items,
        "golden_items": golden,
        "answers_wanted": wanted,
        "answers": answers,
        "golden_answers": golden_answers,
        "answers_excluded": excluded,
        "answers_free": free,
        "answers_leased": leased_slots,
        "open_leases": open_leases,
        "items_aggregated": aggregated,
        "done": round(answers / wanted, 4) if wanted else 0.0,
        "stuck": _stuck(session, job, free, budget_view["exhausted"]),
        "budget": budget_view,
        "golden_supply": golden_supply(session, job),
        "last_aggregation": None
        if run is None
        else {
            "method": run.method,
            "version": run.version,
            "answers_used": run.answers_used,
            "items": run.items,
            "seconds": run.seconds,
            "at": run.created_at.isoformat(),
        },
    }


def _stuck(session: Session, job: Job, free: int, budget_exhausted: bool) -> str | None:
    """Why a running job with free work makes no progress, or None while it can.

    `budget_exhausted`: the budget cannot pay for another task. `waiting_for_workers`: no
    active worker may take any of the free work (each has seen those items, is kept from the
    job or failed its qualification), so nothing moves until new workers come (or a ban is
    lifted). An operator meets this after banning workers with their answers excluded: the
    rounds reissued need workers who have not seen those items."""
    if job.state != JobState.RUNNING or free == 0:
        return None
    if budget_exhausted:
        return "budget_exhausted"
    now = utcnow()
    kept = exists().where(
        WorkerBlock.worker_id == Account.id,
        or_(WorkerBlock.until.is_(None), WorkerBlock.until > now),
        or_(
            WorkerBlock.job_id == job.id,
            and_(
                WorkerBlock.job_id.is_(None),
                or_(WorkerBlock.requester_id.is_(None), WorkerBlock.requester_id == job.requester_id),
            ),
        ),
    )
    failed = exists().where(
        Qualification.job_id == job.id,
        Qualification.worker_id == Account.id,
        Qualification.state == QualificationState.FAILED,
    )
    seen = (
        exists()
        .where(
            AssignmentItem.job_id == job.id,
            AssignmentItem.worker_id == Account.id,
            AssignmentItem.item_id == Slot.item_id,
        )
        .correlate(Account, Slot)  # the worker two levels up, the slot one up
    )
    unseen = exists().where(Slot.job_id == job.id, ~seen)
    someone = exists().where(
        Account.role == Role.WORKER, Account.status == AccountStatus.ACTIVE, ~kept, ~failed, unseen
    )
    return None if session.execute(select(someone)).scalar_one() else "waiting_for_workers"


TUNABLE = (
    "title",
    "instructions",
    "overlap",
    "overlap_max",
    "target_confidence",
    "golden_ratio",
    "items_per_task",
    "aggregation",
    "lease_seconds",
    "qualification",
    "golden_max_views",
)


def _golden_short(session: Session, job_id: int, qualification: dict[str, Any]) -> bool:
    """Fewer golden items than one qualification test takes: nobody could ever qualify."""
    golden = session.execute(select(func.count()).where(Item.job_id == job_id, Item.is_golden.is_(True))).scalar_one()
    return bool(golden < QualificationSettings.load(qualification).items)


def tune_job(
    session: Session,
    job: Job,
    changes: dict[str, Any],
    limits: acceptance.Limits,
    actor_id: int | None = None,
    max_answers: int = DEFAULT_MAX_ANSWERS,
) -> Job:
    """Change the title, instructions, redundancy and task settings, also on a running job.

    Raising overlap tops every real item up to the new count and reopens a finished job;
    lowering it withdraws the free slots beyond what each item still wants, counting the
    answers it keeps and its open leases, and never touches answers already given (or paid
    for). The job's state follows its pool either way. Other settings apply from the next lease; a changed
    qualification leaves workers' decided qualifications as they are (a failure stays final
    until an operator resets it).
    """
    if job.state == JobState.CANCELLED:
        raise Conflict("cannot change a cancelled job")
    new_overlap = changes.get("overlap", job.overlap)
    try:
        check_dynamic_overlap(
            new_overlap,
            changes.get("overlap_max", job.overlap_max),
            changes.get("target_confidence", job.target_confidence),
        )
        check_method(job.annotation["type"], changes.get("aggregation", job.aggregation))
    except ValidationError as error:
        field, reasons = next(iter(error.normalized_messages().items()))
        raise Invalid(str(field), str(reasons[0])) from None
    qualification = changes.get("qualification")
    if job.state != JobState.DRAFT and qualification is not None and _golden_short(session, job.id, qualification):
        raise Invalid("qualification.items", "more than the job's golden items")
    old_overlap, old_ceiling = job.overlap, slots.ceiling(job)
    before = {name: getattr(job, name) for name in (*TUNABLE, "acceptance", "budget_cents") if name in changes}
    for name in TUNABLE:
        if name in changes:
            setattr(job, name, changes[name])
    if "acceptance" in changes:
        acceptance.check_limits(AcceptanceRules.load(changes["acceptance"]), limits)
        job.acceptance = changes["acceptance"]
    if "budget_cents" in changes:
        job.budget_cents = changes["budget_cents"]
        budget.apply_budget(session, job, actor_id)
    job.updated_at = utcnow()
    session.add(job)
    session.flush()
    if slots.ceiling(job) > old_ceiling:
        slots.check_size(session, job, max_answers, field="overlap_max" if job.overlap_max else "overlap")
    if job.state != JobState.DRAFT:
        if job.overlap > old_overlap:
            slots.top_up(session, job, job.overlap)
        if slots.ceiling(job) < old_ceiling:
            slots.trim(session, job)
    session.add(
        AuditEvent(
            actor_id=actor_id,
            action=slots.TUNED,
            subject_type="job",
            subject_id=job.id,
            details={"before": before, "after": {name: getattr(job, name) for name in before}},
        )
    )
    return job
