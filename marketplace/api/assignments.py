"""Worker API: lease the next task, submit it once, skip it, read it back."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from marketplace import queue
from marketplace.api import idempotency_key
from marketplace.auth import current_principal, require
from marketplace.db import get_hot_engine, get_session
from marketplace.models import utcnow
from marketplace.schemas import AssignmentSchema, LeaseRequestSchema, SubmitResultSchema, SubmitSchema
from marketplace.services import leasing, submissions

blp = Blueprint("assignments", __name__, url_prefix="/v1/assignments", description="Workers' tasks")

# Schema instances, not classes, for the hot path's request bodies: webargs instantiates a
# class on every request (with its nested schemas), ~0.1 ms of a lease+submit cycle.
LEASE_REQUEST = LeaseRequestSchema()
SUBMIT_REQUEST = SubmitSchema()


@blp.route("")
class Assignments(MethodView):
    @require("worker")
    @blp.arguments(LEASE_REQUEST, required=False)
    @blp.response(201, AssignmentSchema)
    @blp.alt_response(204, description="no work for you now")
    def post(self, body: dict[str, Any]) -> Any:
        """Lease the next task: items you have never seen, with a deadline; 204 when none."""
        job_id = (body or {}).get("job_id")
        engine = get_hot_engine()
        if engine.dialect.name == "postgresql":  # the hot path: no Session (see services/pool_pg.py)
            task = leasing.lease_task_pg(engine, current_principal().id, job_id)
        else:
            task = leasing.lease_task(get_session(), current_principal().id, job_id)
        if task is None:
            return "", 204
        return task


@blp.route("/<id:assignment_id>")
class AssignmentResource(MethodView):
    @require("worker")
    @blp.response(200, AssignmentSchema)
    def get(self, assignment_id: int) -> dict[str, Any]:
        """One of your own assignments."""
        return submissions.get_assignment(get_session(), current_principal().id, assignment_id)


@blp.route("/<id:assignment_id>/submit", methods=["POST"])
@require("worker")
@blp.arguments(SUBMIT_REQUEST)
@blp.response(200, SubmitResultSchema)
def submit(body: dict[str, Any], assignment_id: int) -> Any:
    """Answer every item of the task; a retry with the same `Idempotency-Key` returns the first result."""
    received_at = utcnow()
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    engine = get_hot_engine()
    worker_id, answers = current_principal().id, body["answers"]
    if engine.dialect.name == "postgresql":  # the hot path: no Session (see services/pool_pg.py)
        result = submissions.submit_pg(engine, worker_id, assignment_id, answers, key, received_at)
    else:
        result = submissions.submit(get_session(), worker_id, assignment_id, answers, key, received_at)
    return after_submit(result, worker_id)


def after_submit(result: submissions.SubmitResult, worker_id: int) -> submissions.SubmitResult:
    """What follows a stored submit (here and on the hot path, `api/hot.py`): a qualification
    test is graded (rare: off the hot path); aggregation is queued in batches, when an answer id
    crosses a multiple of the batch size or at the end; the rules run right after golden
    answers arrive, so a spammer stops soon."""
    if result.is_test:
        result = submissions.graded(get_session(), result, worker_id)
    every = current_app.config["AGGREGATE_EVERY_ANSWERS"]
    if result.job_finished or any(i % every == 0 for i in result.answer_ids):
        queue.enqueue_once(queue.get_redis(), current_app.config["QUEUE_NAME"], queue.AGGREGATE_JOB, result.job_id)
    if result.golden and not result.replayed:
        queue.enqueue_once(
            queue.get_redis(), current_app.config["QUEUE_NAME"], queue.RULES_JOB, result.job_id, worker_id
        )
    return result


@blp.route("/<id:assignment_id>/skip", methods=["POST"])
@require("worker")
@blp.response(200, SubmitResultSchema)
def skip(assignment_id: int) -> Any:
    """Give the task back; its items go to other workers."""
    return submissions.skip(get_session(), current_principal().id, assignment_id)
