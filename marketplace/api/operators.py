"""Operator API: any worker's record across jobs."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from marketplace.auth import require
from marketplace.db import get_session
from marketplace.errors import NotFound
from marketplace.models import Account
from marketplace.schemas import MeSchema
from marketplace.services.results import worker_quality_of

blp = Blueprint("operators", __name__, url_prefix="/v1/workers", description="Operators' view of workers")


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
