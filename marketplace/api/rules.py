"""Quality rules as data: operators set global ones, requesters ones for their own jobs."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import or_, select

from marketplace.auth import current_principal, require
from marketplace.db import get_session
from marketplace.errors import Forbidden, Invalid, NotFound
from marketplace.models import Job, QualityRule, Role
from marketplace.schemas import QualityQuerySchema, RuleCreateSchema, RuleSchema
from marketplace.services.jobs import get_job

blp = Blueprint("rules", __name__, url_prefix="/v1/rules", description="Quality rules")
PLATFORM_WIDE = ("ban_everywhere",)  # actions beyond the rule's job: operators' only


@blp.route("")
class Rules(MethodView):
    @require("operator", "requester")
    @blp.arguments(RuleCreateSchema)
    @blp.response(201, RuleSchema)
    def post(self, body: dict[str, Any]) -> QualityRule:
        """Add a rule: global (operators, no `job_id`) or for one job (its requester or an operator)."""
        session = get_session()
        principal = current_principal()
        job_id = body.get("job_id")
        if job_id is None and principal.role != Role.OPERATOR:
            raise Invalid("job_id", "requesters set rules for one of their jobs")
        if job_id is not None:
            get_job(session, principal, job_id)
        if body["action"]["type"] in PLATFORM_WIDE and principal.role != Role.OPERATOR:
            reason = f"{body['action']['type']} acts on every requester's jobs: operators only (use ban_job)"
            raise Forbidden(f"action.type: {reason}", {"json": {"action": {"type": [reason]}}})
        rule = QualityRule(job_id=job_id, created_by=principal.id, condition=body["condition"], action=body["action"])
        session.add(rule)
        session.commit()
        return rule

    @require("operator", "requester")
    @blp.arguments(QualityQuerySchema, location="query")
    @blp.response(200, RuleSchema(many=True))
    def get(self, query: dict[str, Any]) -> list[QualityRule]:
        """Rules in force: for a job, its own and the global ones; without `job_id`, all you may see."""
        session = get_session()
        principal = current_principal()
        statement = select(QualityRule).order_by(QualityRule.id)
        if query.get("job_id") is not None:
            get_job(session, principal, query["job_id"])
            statement = statement.where(or_(QualityRule.job_id == query["job_id"], QualityRule.job_id.is_(None)))
        elif principal.role != "operator":
            owned = select(Job.id).where(Job.requester_id == principal.id)
            statement = statement.where(or_(QualityRule.job_id.in_(owned), QualityRule.job_id.is_(None)))
        return list(session.execute(statement).scalars())


@blp.route("/<id:rule_id>")
class RuleResource(MethodView):
    @require("operator", "requester")
    @blp.response(204)
    def delete(self, rule_id: int) -> None:
        """Switch a rule off (it stays on record for the audit trail)."""
        session = get_session()
        principal = current_principal()
        rule = session.get(QualityRule, rule_id)
        if rule is None or (principal.role != "operator" and rule.job_id is None):
            raise NotFound(f"rule {rule_id} not found")
        if rule.job_id is not None:
            try:
                get_job(session, principal, rule.job_id)
            except NotFound:
                raise NotFound(f"rule {rule_id} not found") from None
        rule.enabled = False
        session.add(rule)
        session.commit()
