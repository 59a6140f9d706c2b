"""Jobs: creation, items, state changes, progress. Ownership is checked here, once."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError
from sqlalchemy import and_, delete, exists, func, insert, literal, or_, select
from sqlmodel import Session

from marketplace.auth import Principal
from marketplace.errors import Conflict, Invalid, NotFound
from marketplace.models import (
    Account,
    Aggregate,
    AggregationRun,
    Answer,
    Assignment,
    AssignmentItem,
    Item,
    Job,
    Qualification,
    Slot,
    WorkerBlock,
    utcnow,
)
from marketplace.schemas import check_dynamic_overlap
from marketplace.services import acceptance, budget, pricing
from marketplace.services import items as item_service
from marketplace.services.leasing import pool_random, release_assignments

TRANSITIONS = {
    "launch": ({"draft", "paused"}, "running"),
    "pause": ({"running"}, "paused"),
    "cancel": ({"draft", "running", "paused"}, "cancelled"),
}


def create_job(
    session: Session, requester_id: int, fields: dict[str, Any], currency: str, limits: acceptance.Limits
) -> Job:
    fields = dict(fields)
    prices = pricing.normalise(fields.pop("pricing", None), fields.pop("reward_cents", None))
    kind = fields["annotation"]["type"]
    acceptance.check_limits(fields.get("acceptance") or {}, limits)
    job = Job(
        requester_id=requester_id,
        pricing=prices,
        reward_cents=pricing.base_cents(prices, kind),
        item_hold_cents=pricing.item_hold(prices, fields.get("bonus"), kind),
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
    if job is None or (principal.role != "operator" and job.requester_id != principal.id):
        raise NotFound(f"job {job_id} not found")
    return job


def add_items(session: Session, job: Job, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Insert items in one transaction; golden ones carry `answer`. Answers each item's id and
    key in the order the items were sent.

    The rows are inserted in a shuffled order, so that ids say nothing about which items are
    golden (however the requester ordered them). On a running job the new real items enter
    the pool at once.
    """
    if job.state not in ("draft", "running", "paused"):
        raise Conflict(f"cannot add items to a {job.state} job")
    labels = set(job.annotation["labels"])
    for index, item in enumerate(items):
        answer = item.get("answer")
        if answer is not None and answer not in labels:
            raise Invalid(f"{index}.answer", "not one of the job's labels")
    keys: list[str | None] = [item.get("key") for item in items]
    item_service.check_new_keys(session, job.id, keys)
    order = list(range(len(items)))
    pool_random().shuffle(order)
    now = utcnow()
    rows = [
        {
            "job_id": job.id,
            "key": keys[index],
            "data": items[index]["data"],
            "is_golden": "answer" in items[index],
            "answer": items[index].get("answer"),
            "created_at": now,
        }
        for index in order
    ]
    stored = session.execute(insert(Item).returning(Item.id, sort_by_parameter_order=True), rows).scalars().all()
    ids = [0] * len(items)
    for position, index in enumerate(order):
        ids[index] = stored[position]
    item_service.name_keyless(session, job.id, keys, ids)
    real_ids = [ids[index] for index, item in enumerate(items) if "answer" not in item]
    if job.state != "draft" and real_ids:
        _fill_pool(session, job, real_ids)
    return {
        "added": len(ids),
        "golden": len(ids) - len(real_ids),
        "items": [
            {"id": item_id, "key": key if key is not None else str(item_id)}
            for item_id, key in zip(ids, keys, strict=True)
        ],
    }


def _fill_pool(session: Session, job: Job, item_ids: list[int] | None, rounds: range | None = None) -> None:
    """Put one slot per (real item, round) into the free pool."""
    for round_no in rounds if rounds is not None else range(job.overlap):
        if item_ids is None:
            source = select(Item.job_id, Item.id, literal(round_no)).where(
                Item.job_id == job.id,
                Item.is_golden.is_(False),
                # a round dynamic overlap already opened (or filled) for the item stays as it is
                ~exists().where(Slot.job_id == job.id, Slot.item_id == Item.id, Slot.round == round_no),
                ~exists().where(Answer.job_id == job.id, Answer.item_id == Item.id, Answer.round == round_no),
                ~exists().where(
                    AssignmentItem.job_id == job.id,
                    AssignmentItem.item_id == Item.id,
                    AssignmentItem.round == round_no,
                    AssignmentItem.assignment_id.in_(
                        select(Assignment.id).where(Assignment.job_id == job.id, Assignment.state == "leased")
                    ),
                ),
            )
            session.execute(insert(Slot).from_select(["job_id", "item_id", "round"], source))
        else:
            session.execute(
                insert(Slot),
                [{"job_id": job.id, "item_id": i, "round": round_no} for i in item_ids],
            )


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
    if job.state == "draft":
        _fill_pool(session, job, None)
    job.state = "running"
    budget.apply_budget(session, job, actor_id)


def _cancel(session: Session, job: Job) -> None:
    """Revoke open leases and empty the pool: nothing more is issued; the unspent budget goes
    back to the requester (holds of submitted work follow once it is decided)."""
    open_leases = session.execute(
        select(Assignment.id).where(Assignment.job_id == job.id, Assignment.state == "leased")
    ).scalars()
    release_assignments(session, job.id, list(open_leases), "revoked", utcnow())
    session.execute(delete(Slot).where(Slot.job_id == job.id))
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
    open_leases = count(select(func.count()).where(Assignment.job_id == job_id, Assignment.state == "leased"))
    leased_slots = count(
        select(func.count())
        .select_from(AssignmentItem)
        .join(Assignment, Assignment.id == AssignmentItem.assignment_id)
        .where(
            AssignmentItem.job_id == job_id,
            Assignment.state == "leased",
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
    if job.state != "running" or free == 0:
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
        Qualification.job_id == job.id, Qualification.worker_id == Account.id, Qualification.state == "failed"
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
    someone = exists().where(Account.role == "worker", Account.status == "active", ~kept, ~failed, unseen)
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
)


def _golden_short(session: Session, job_id: int, qualification: dict[str, Any]) -> bool:
    """Fewer golden items than one qualification test takes: nobody could ever qualify."""
    golden = session.execute(select(func.count()).where(Item.job_id == job_id, Item.is_golden.is_(True))).scalar_one()
    return bool(golden < qualification["items"])


def tune_job(
    session: Session, job: Job, changes: dict[str, Any], limits: acceptance.Limits, actor_id: int | None = None
) -> Job:
    """Change the title, instructions, redundancy and task settings, also on a running job.

    Raising overlap adds the new rounds of every real item to the pool and reopens a finished
    job; lowering it withdraws the free slots of the dropped rounds and never touches answers
    already given (or paid for). Other settings apply from the next lease; a changed
    qualification leaves workers' decided qualifications as they are (a failure stays final
    until an operator resets it).
    """
    if job.state == "cancelled":
        raise Conflict("cannot change a cancelled job")
    new_overlap = changes.get("overlap", job.overlap)
    try:
        check_dynamic_overlap(
            new_overlap,
            changes.get("overlap_max", job.overlap_max),
            changes.get("target_confidence", job.target_confidence),
        )
    except ValidationError as error:
        field, reasons = next(iter(error.normalized_messages().items()))
        raise Invalid(str(field), str(reasons[0])) from None
    qualification = changes.get("qualification")
    if job.state != "draft" and qualification is not None and _golden_short(session, job.id, qualification):
        raise Invalid("qualification.items", "more than the job's golden items")
    new_ceiling = changes.get("overlap_max", job.overlap_max) or new_overlap
    if job.state != "draft" and new_overlap > job.overlap:
        _fill_pool(session, job, None, range(job.overlap, new_overlap))
        if job.state == "completed":
            job.state = "running"
    elif job.state != "draft" and new_ceiling < (job.overlap_max or job.overlap):
        session.execute(delete(Slot).where(Slot.job_id == job.id, Slot.round >= new_ceiling))
        pending = session.execute(
            select(
                exists().where(Slot.job_id == job.id)
                | exists().where(Assignment.job_id == job.id, Assignment.state == "leased")
            )
        ).scalar_one()
        if job.state == "running" and not pending:
            job.state = "completed"
    for name in TUNABLE:
        if name in changes:
            setattr(job, name, changes[name])
    if "acceptance" in changes:
        acceptance.check_limits(changes["acceptance"], limits)
        job.acceptance = changes["acceptance"]
    if "budget_cents" in changes:
        job.budget_cents = changes["budget_cents"]
        budget.apply_budget(session, job, actor_id)
    job.updated_at = utcnow()
    session.add(job)
    session.flush()
    return job
