"""Money: funding requesters, a job's spend, payout runs and the ledger check (operators)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from marketplace import queue
from marketplace.api import idempotency_key
from marketplace.auth import current_principal, require
from marketplace.db import get_session
from marketplace.errors import Invalid, NotFound
from marketplace.models import Account
from marketplace.schemas import (
    FundedSchema,
    FundSchema,
    LedgerCheckSchema,
    PayoutFileQuerySchema,
    PayoutRunSchema,
    SpendSchema,
)
from marketplace.services import budget, ledger, ledger_audit, payouts
from marketplace.services.jobs import get_job

blp = Blueprint("money", __name__, url_prefix="/v1", description="Funds, spend, payouts, the ledger")


@blp.route("/accounts/<id:account_id>/funds", methods=["POST"])
@require("operator")
@blp.arguments(FundSchema)
@blp.response(201, FundedSchema)
def fund(body: dict[str, Any], account_id: int) -> dict[str, Any]:
    """Credit a requester's funds (money received outside: there is no card processor). A retry
    with the same `Idempotency-Key` moves nothing and answers as the first time."""
    currency = current_app.config["CURRENCY"]
    if body["currency"] != currency:
        raise Invalid("currency", f"this marketplace books {currency} only")
    session = get_session()
    account = session.get(Account, account_id)
    if account is None or account.role != "requester":
        raise NotFound(f"requester {account_id} not found")
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    result = ledger.fund(session, account_id, body["amount_cents"], currency, current_principal().id, key)
    session.commit()
    return result


@blp.route("/jobs/<id:job_id>/spend")
class JobSpend(MethodView):
    @require("requester", "operator")
    @blp.response(200, SpendSchema)
    def get(self, job_id: int) -> dict[str, Any]:
        """Where the job's money went: work, bonuses, refunds; what is held and what is left."""
        session = get_session()
        return budget.spend(session, get_job(session, current_principal(), job_id))


@blp.route("/payouts/runs")
class PayoutRuns(MethodView):
    @require("operator")
    @blp.response(201, PayoutRunSchema)
    @blp.alt_response(200, schema=PayoutRunSchema, description="a run is already open (or this key started one)")
    def post(self) -> Any:
        """Pay every worker what it has earned since the last run, in the background. One run is
        open at a time: starting one while another is open returns that one (and resumes it)."""
        session = get_session()
        key = idempotency_key(request.headers.get("Idempotency-Key"))
        run, created = payouts.start_run(session, current_principal().id, current_app.config["CURRENCY"], key)
        session.commit()
        if run.state != "done":
            redis = queue.get_redis()
            if not created:  # resuming: a guard left by a lost job must not keep it off the queue
                redis.delete(queue.guard_key(queue.PAYOUT_JOB, run.id))  # (runs are safe to execute twice)
            queue.enqueue_once(redis, current_app.config["QUEUE_NAME"], queue.PAYOUT_JOB, run.id, ttl=600)
        return payouts.summary(session, run), 201 if created else 200


@blp.route("/payouts/runs/<id:run_id>")
class PayoutRun(MethodView):
    @require("operator")
    @blp.response(200, PayoutRunSchema)
    def get(self, run_id: int) -> dict[str, Any]:
        """A run with one line per worker paid."""
        session = get_session()
        view = payouts.summary(session, payouts.get_run(session, run_id))
        view["lines"] = payouts.run_lines(session, run_id)
        return view


@blp.route("/payouts/runs/<id:run_id>/file")
class PayoutFile(MethodView):
    @require("operator")
    @blp.arguments(PayoutFileQuerySchema, location="query")
    @blp.response(200)
    def get(self, query: dict[str, Any], run_id: int) -> Any:
        """The run's payout file for a payment provider, as CSV or JSON (`format`)."""
        session = get_session()
        run = payouts.get_run(session, run_id)
        lines = payouts.run_lines(session, run.id)
        if query["format"] == "csv":
            body, mimetype = payouts.payout_csv(lines), "text/csv"
        else:
            body, mimetype = json.dumps(lines), "application/json"
        return Response(
            body,
            mimetype=mimetype,
            headers={"Content-Disposition": f"attachment; filename=payout-{run.id}.{query['format']}"},
        )


@blp.route("/ledger/check")
class LedgerCheck(MethodView):
    @require("operator")
    @blp.response(200, LedgerCheckSchema)
    def get(self) -> dict[str, Any]:
        """Recompute the ledger: every movement balanced, balances equal their entries, nobody
        below zero, holds equal open work, every accepted task paid exactly once."""
        problems = ledger_audit.check(get_session())
        return {"ok": not problems, "problems": problems}
