"""Requester API: jobs, items, state, progress, results; operators may act on any job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import ValidationError
from sqlalchemy import select
from sqlmodel import Session

from marketplace import queue
from marketplace.api import bodies
from marketplace.api.bodies import JSON, JSON_LINES, accepts, body_limit
from marketplace.auth import current_principal, require
from marketplace.db import get_session
from marketplace.errors import Invalid, ServiceError, Unprocessable
from marketplace.models import Job
from marketplace.schemas import (
    AggregateQueuedSchema,
    ItemInSchema,
    ItemsAddedSchema,
    ItemSchema,
    ItemsPageSchema,
    ItemsQuerySchema,
    JobCreateSchema,
    JobPatchSchema,
    JobSchema,
    QualificationQuerySchema,
    QualificationSchema,
    ResultsPageSchema,
    ResultsQuerySchema,
    WorkerQualitySchema,
)
from marketplace.services import exports, qualification
from marketplace.services import items as item_service
from marketplace.services import jobs as job_service
from marketplace.services import results as result_service
from marketplace.services.acceptance import Limits
from marketplace.settings import AnnotationSpec

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Requesters' jobs")


def _job_view(job: Job, with_progress: bool = True) -> dict[str, Any]:
    view = job.model_dump()
    if with_progress:
        session = get_session()
        view["progress"] = job_service.progress(session, job)
        view["quality"] = result_service.quality_summary(session, job.id)
    return view


@blp.route("")
class Jobs(MethodView):
    @require("requester")
    @blp.arguments(JobCreateSchema)
    @blp.response(201, JobSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a job as a draft."""
        session = get_session()
        job = job_service.create_job(
            session,
            current_principal().id,
            body,
            current_app.config["CURRENCY"],
            Limits.from_config(current_app.config),
        )
        session.commit()
        return _job_view(job, with_progress=False)

    @require("requester", "operator")
    @blp.response(200, JobSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """Your jobs (operators: all jobs), newest first, at most 100."""
        principal = current_principal()
        query = select(Job).order_by(Job.id.desc()).limit(100)
        if principal.role != "operator":
            query = query.where(Job.requester_id == principal.id)
        return [_job_view(j, with_progress=False) for j in get_session().execute(query).scalars()]


@blp.route("/<id:job_id>")
class JobResource(MethodView):
    @require("requester", "operator")
    @blp.response(200, JobSchema)
    def get(self, job_id: int) -> dict[str, Any]:
        """A job with its progress and a quality summary."""
        return _job_view(job_service.get_job(get_session(), current_principal(), job_id))

    @require("requester", "operator")
    @blp.arguments(JobPatchSchema)
    @blp.response(200, JobSchema)
    def patch(self, body: dict[str, Any], job_id: int) -> dict[str, Any]:
        """Change the title and instructions, tune redundancy and task settings, also while the
        job runs (owner or operator); leases from now on show the new title and instructions."""
        session = get_session()
        job = job_service.get_job(session, current_principal(), job_id, lock=True)
        job_service.tune_job(
            session,
            job,
            body,
            Limits.from_config(current_app.config),
            current_principal().id,
            max_answers=current_app.config["MAX_JOB_ANSWERS"],
        )
        session.commit()
        return _job_view(job)


def _parse_items() -> list[dict[str, Any]]:
    """A JSON array, or JSON Lines when the content type says so; then the item schema.
    (`api/bodies.check_body` has refused any other content type and parsed a JSON body.)"""
    limit = current_app.config["MAX_ITEMS_PER_REQUEST"]
    lines: list[int] | None = None
    if request.mimetype in JSON_LINES:
        payload, lines = _json_lines(request.stream)
    else:
        payload = request.get_json()
    if not isinstance(payload, list) or not payload:
        raise Invalid("_body", "expected a non-empty JSON array of items (or JSON Lines)")
    if len(payload) > limit:
        raise Invalid("_body", f"at most {limit} items per request")
    try:
        return ItemInSchema(many=True).load(payload)  # type: ignore[no-any-return]
    except ValidationError as error:
        message = "invalid items"
        if lines is not None:  # errors name items by index; say where the first one is
            first = min(int(index) for index in error.messages if str(index).isdigit())  # type: ignore[union-attr]
            message += f" (item {first} is on line {lines[first]})"
        raise Unprocessable(message, {"json": error.messages}) from None


def _json_lines(stream: Any) -> tuple[list[Any], list[int]]:
    """One JSON value per line (blank lines skipped), and the line number of each, read line by
    line from the request's stream: the raw body is never held whole beside what it parses to."""
    values: list[Any] = []
    numbers: list[int] = []
    limit = current_app.config["MAX_ITEMS_PER_REQUEST"]
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except ValueError as error:
            where = f"line {number}, {bodies.position(error)}"
            raise ServiceError(
                f"the body is not valid JSON Lines: {where}", {"json": {"_body": [f"invalid JSON at {where}"]}}
            ) from None
        numbers.append(number)
        if len(values) > limit:  # refused as soon as it is known, not after reading the rest
            raise Invalid("_body", f"at most {limit} items per request")
    return values, numbers


@blp.route("/<id:job_id>/items")
class Items(MethodView):
    @require("requester")
    @accepts(JSON, *JSON_LINES)
    @body_limit("UPLOAD_MAX_BYTES")
    @blp.response(201, ItemsAddedSchema)
    @blp.doc(
        requestBody={
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": ItemInSchema}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    )
    def post(self, job_id: int) -> dict[str, Any]:
        """Add items in bulk, in one transaction; an item with `answer` is golden. Answers each
        item's id and key in the order sent."""
        session = get_session()
        job = job_service.get_job(session, current_principal(), job_id, lock=True)
        items = _parse_items()
        added = job_service.add_items(session, job, items, max_answers=current_app.config["MAX_JOB_ANSWERS"])
        session.commit()
        return added

    @require("requester", "operator")
    @blp.arguments(ItemsQuerySchema, location="query")
    @blp.response(200, ItemsPageSchema)
    def get(self, query: dict[str, Any], job_id: int) -> dict[str, Any]:
        """The job's items as uploaded (id, key, data, golden or not), by id from `after`."""
        session = get_session()
        job = job_service.get_job(session, current_principal(), job_id)
        page, next_after = item_service.items_page(session, job.id, query["after"], query["limit"])
        return {"items": page, "next_after": next_after}


@blp.route("/<id:job_id>/items/<id:item_id>")
class ItemResource(MethodView):
    @require("requester", "operator")
    @blp.response(200, ItemSchema)
    def get(self, job_id: int, item_id: int) -> dict[str, Any]:
        """One item of the job, as uploaded."""
        session = get_session()
        job = job_service.get_job(session, current_principal(), job_id)
        return item_service.get_item(session, job.id, item_id)


def _state_view(action: str) -> Any:
    @require("requester", "operator")
    @blp.response(200, JobSchema)
    def view(job_id: int) -> dict[str, Any]:
        session = get_session()
        job = job_service.get_job(session, current_principal(), job_id, lock=True)
        job_service.change_state(session, job, action, current_principal().id)
        session.commit()
        return _job_view(job)

    view.__name__ = f"{action}_job"
    view.__doc__ = f"{action.capitalize()} the job."
    return view


for _action in ("launch", "pause", "cancel"):
    blp.route(f"/<id:job_id>/{_action}", methods=["POST"])(_state_view(_action))


def _closing(session: Session, chunks: Iterator[str]) -> Iterator[str]:
    """Stream `chunks`, then close the session they read from.

    The request's teardown runs before a streamed body is read, so it cannot close this
    session; left open, its transaction and connection would be held until garbage collection.
    """
    try:
        yield from chunks
    finally:
        session.close()


@blp.route("/<id:job_id>/results")
class Results(MethodView):
    @require("requester", "operator")
    @blp.arguments(ResultsQuerySchema, location="query")
    @blp.response(200, ResultsPageSchema)
    def get(self, query: dict[str, Any], job_id: int) -> Any:
        """Aggregated results per real item: a page (`after`, `limit`), or all as CSV / JSON Lines."""
        session = get_session()
        job = job_service.get_job(session, current_principal(), job_id)
        spec = AnnotationSpec.load(job.annotation)
        field = spec.answer_field
        if query["format"] not in exports.FORMATS:
            exports.check_masks(query["format"], spec, query.get("masks"))
        if query["format"] == "json":
            page, next_after = result_service.results_page(session, job.id, query["after"], query["limit"], field)
            return {"results": page, "next_after": next_after}
        rows = result_service.iter_results(session, job.id, field)
        if query["format"] in exports.FORMATS:
            made = exports.export(query["format"], spec, rows, query.get("masks"))
            disposition = f"attachment; filename=job-{job.id}-{made.extension}"
            return Response(made.body, mimetype=made.mimetype, headers={"Content-Disposition": disposition})
        if query["format"] == "csv":
            body, mimetype = result_service.export_csv(rows, field), "text/csv"
        else:
            body, mimetype = result_service.export_jsonl(rows), "application/x-ndjson"
        filename = f"job-{job.id}-results.{query['format']}"
        return Response(
            stream_with_context(_closing(session, body)),
            mimetype=mimetype,
            headers={"Content-Disposition": f"attachment; filename={filename}"},
        )


@blp.route("/<id:job_id>/workers")
class JobWorkers(MethodView):
    @require("requester", "operator")
    @blp.response(200, WorkerQualitySchema(many=True))
    def get(self, job_id: int) -> list[dict[str, Any]]:
        """Per-worker quality on this job (golden accuracy, agreement), as of the last aggregation."""
        session = get_session()
        job = job_service.get_job(session, current_principal(), job_id)
        return result_service.worker_quality(session, job.id)


@blp.route("/<id:job_id>/aggregate", methods=["POST"])
@require("requester", "operator")
@blp.response(202, AggregateQueuedSchema)
def aggregate_now(job_id: int) -> dict[str, Any]:
    """Queue an aggregation of the job now (it runs in the background)."""
    job = job_service.get_job(get_session(), current_principal(), job_id)
    queued = queue.enqueue_once(queue.get_redis(), current_app.config["QUEUE_NAME"], queue.AGGREGATE_JOB, job.id)
    return {"job_id": job.id, "queued": queued}


@blp.route("/<id:job_id>/qualifications")
class JobQualifications(MethodView):
    @require("requester", "operator")
    @blp.arguments(QualificationQuerySchema, location="query")
    @blp.response(200, QualificationSchema(many=True))
    def get(self, query: dict[str, Any], job_id: int) -> list[dict[str, Any]]:
        """Workers' qualifications on this job (state, score, passed by test or carried over),
        by worker id from `after`."""
        session = get_session()
        job = job_service.get_job(session, current_principal(), job_id)
        return qualification.qualifications(session, job.id, query["after"], query["limit"])


@blp.route("/<id:job_id>/qualifications/<id:worker_id>", methods=["DELETE"])
@require("operator")
@blp.response(204)
def reset_qualification(job_id: int, worker_id: int) -> None:
    """Reset a worker's qualification on the job (a failure is final until then): it may take
    the test again, on golden items it has not seen; a test still out is revoked."""
    session = get_session()
    job = job_service.get_job(session, current_principal(), job_id)
    qualification.reset(session, job.id, worker_id, current_principal().id)
    session.commit()
