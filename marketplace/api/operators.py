"""Operator API: any worker's record across jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from marketplace import queue
from marketplace.auth import current_principal, forget, require
from marketplace.db import get_session
from marketplace.errors import NotFound
from marketplace.models import Account, utcnow
from marketplace.schemas import (
    AuditEventSchema,
    AuditQuerySchema,
    BanResultSchema,
    BanSchema,
    DailyQualitySchema,
    MeSchema,
    QualityQuerySchema,
    RankedWorkerSchema,
    RankingQuerySchema,
    UnbanSchema,
)
from marketplace.services import bans, quality
from marketplace.services.jobs import get_job
from marketplace.services.results import worker_quality_of

blp = Blueprint("operators", __name__, url_prefix="/v1/workers", description="Operators' view of workers")


def _requester_scope(job_id: int | None) -> int | None:
    """Operators see everything; a requester only answers on its own jobs (404 for others')."""
    principal = current_principal()
    if principal.role == "operator":
        return None
    if job_id is not None:
        get_job(get_session(), principal, job_id)
    return principal.id


@blp.route("")
class WorkerRanking(MethodView):
    @require("operator", "requester")
    @blp.arguments(RankingQuerySchema, location="query")
    @blp.response(200, RankedWorkerSchema(many=True))
    def get(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Workers by a quality figure, worst first, with a 95% Wilson interval on golden
        accuracy (requesters: over their own jobs only)."""
        job_id = query.get("job_id")
        scope = _requester_scope(job_id)
        return quality.ranking(get_session(), query["sort"], query["limit"], scope, job_id)


@blp.route("/<id:worker_id>/quality")
class WorkerDailyQuality(MethodView):
    @require("operator", "requester")
    @blp.arguments(QualityQuerySchema, location="query")
    @blp.response(200, DailyQualitySchema(many=True))
    def get(self, query: dict[str, Any], worker_id: int) -> list[dict[str, Any]]:
        """A worker's golden accuracy and agreement per day, so drift shows."""
        job_id = query.get("job_id")
        scope = _requester_scope(job_id)
        return quality.daily(get_session(), worker_id, scope, job_id)


@blp.route("/<id:worker_id>")
class WorkerRecord(MethodView):
    @require("operator")
    @blp.response(200, MeSchema)
    def get(self, worker_id: int) -> dict[str, Any]:
        """A worker's status and quality on every job, as of each job's last aggregation."""
        session = get_session()
        account = session.get(Account, worker_id)
        if account is None or account.role != "worker":
            raise NotFound(f"worker {worker_id} not found")
        return {
            "id": account.id,
            "role": account.role,
            "name": account.name,
            "status": account.status,
            "quality": worker_quality_of(session, worker_id),
        }


@blp.route("/<id:worker_id>/ban")
class WorkerBan(MethodView):
    @require("operator")
    @blp.arguments(BanSchema)
    @blp.response(200, BanResultSchema)
    def post(self, body: dict[str, Any], worker_id: int) -> dict[str, Any]:
        """Ban a worker everywhere, from one job or from one requester's jobs, for good or for
        `duration_seconds`: no new work there, open leases revoked; with `exclude_answers` its
        answers leave aggregation and their redundancy is issued again."""
        until = utcnow() + timedelta(seconds=body["duration_seconds"]) if "duration_seconds" in body else None
        result = bans.ban_worker(
            get_session(),
            worker_id,
            current_principal().id,
            body["reason"],
            body["exclude_answers"],
            job_id=body.get("job_id"),
            requester_id=body.get("requester_id"),
            until=until,
        )
        forget()
        for job_id in result.pop("jobs_to_aggregate"):
            queue.enqueue_once(queue.get_redis(), current_app.config["QUEUE_NAME"], queue.AGGREGATE_JOB, job_id)
        return result

    @require("operator")
    @blp.arguments(UnbanSchema, required=False)
    @blp.response(200, BanResultSchema)
    def delete(self, body: dict[str, Any] | None, worker_id: int) -> dict[str, Any]:
        """Lift a ban; the worker can take work again."""
        reason = (body or {}).get("reason", "")
        result = bans.unban_worker(get_session(), worker_id, current_principal().id, reason)
        forget()
        return result


audit_blp = Blueprint("audit", __name__, url_prefix="/v1/audit", description="Operators' audit log")


@audit_blp.route("")
class Audit(MethodView):
    @require("operator")
    @audit_blp.arguments(AuditQuerySchema, location="query")
    @audit_blp.response(200, AuditEventSchema(many=True))
    def get(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Bans and unbans: who, when, why, with the figures; oldest first from `after`."""
        return bans.audit_log(get_session(), query["after"], query["limit"])
