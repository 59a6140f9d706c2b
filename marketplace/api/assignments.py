"""Worker API: lease the next task, submit it once, skip it, read it back."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from marketplace import queue
from marketplace.api import idempotency_key
from marketplace.api.bodies import body_limit
from marketplace.auth import current_principal, require
from marketplace.db import get_hot_engine, get_session
from marketplace.models import utcnow
from marketplace.pool import lease, skip, submit, view
from marketplace.schemas import AssignmentSchema, LeaseRequestSchema, SubmitResultSchema, SubmitSchema
from marketplace.services import submitted
from marketplace.settings import LeaseLimits

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
        """Lease the next task: items you have never seen, with a deadline and what it pays; 204 when
        none; 409 while you hold your limit of open tasks. With an `Idempotency-Key`, a retry returns
        the task the first request leased."""
        task = lease.lease_task(
            get_hot_engine(),
            current_principal().id,
            (body or {}).get("job_id"),
            key=idempotency_key(request.headers.get("Idempotency-Key")),
            limits=LeaseLimits.from_config(current_app.config),
        )
        if task is None:
            return "", 204
        return task


@blp.route("/<id:assignment_id>")
class AssignmentResource(MethodView):
    @require("worker")
    @blp.response(200, AssignmentSchema)
    def get(self, assignment_id: int) -> dict[str, Any]:
        """One of your own assignments."""
        return view.own_assignment(get_session(), current_principal().id, assignment_id)


@blp.route("/<id:assignment_id>/submit", methods=["POST"])
@require("worker")
@body_limit("SUBMIT_MAX_BYTES")
@blp.arguments(SUBMIT_REQUEST)
@blp.response(200, SubmitResultSchema)
def submit_task(body: dict[str, Any], assignment_id: int) -> Any:
    """Answer every item of the task; a retry with the same `Idempotency-Key` returns the first result."""
    received_at = utcnow()
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    worker_id = current_principal().id
    result = submit.submit(get_hot_engine(), worker_id, assignment_id, body["answers"], key, received_at)
    return follow_up(result, worker_id)


def follow_up(result: submit.SubmitResult, worker_id: int) -> submit.SubmitResult:
    """`submitted.follow_up` with this app's engine, Redis and settings (also the hot path's)."""
    config = current_app.config
    return submitted.follow_up(
        get_hot_engine(), queue.get_redis(), config["QUEUE_NAME"], config["AGGREGATE_EVERY_ANSWERS"], result, worker_id
    )


@blp.route("/<id:assignment_id>/skip", methods=["POST"])
@require("worker")
@blp.response(200, SubmitResultSchema)
def skip_task(assignment_id: int) -> Any:
    """Give the task back; its items go to other workers."""
    return skip.skip(get_session(), current_principal().id, assignment_id)
