"""Accounts: operators create keys; everyone reads their own account."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select

from marketplace import auth
from marketplace.auth import current_principal, require
from marketplace.db import get_session
from marketplace.models import Account, Answer, Assignment, utcnow
from marketplace.schemas import (
    AccountCreatedSchema,
    AccountCreateSchema,
    KeyRevokedSchema,
    KeyRevokeSchema,
    KeyRotatedSchema,
    KeyRotateSchema,
    MeSchema,
    MeUpdateSchema,
)
from marketplace.services import ledger
from marketplace.services.acceptance import recent_decisions
from marketplace.services.accounts import create_account, revoke_keys, rotate_key
from marketplace.services.quality import settled_golden
from marketplace.services.results import own_quality

blp = Blueprint("accounts", __name__, url_prefix="/v1", description="Accounts and keys")


@blp.route("/accounts")
class Accounts(MethodView):
    @require("operator")
    @blp.arguments(AccountCreateSchema)
    @blp.response(201, AccountCreatedSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an account; its key is in this answer and nowhere else, ever."""
        session = get_session()
        account, key = create_account(session, body["role"], body["name"])
        session.commit()
        return {"id": account.id, "role": account.role, "name": account.name, "key": key}


@blp.route("/me")
class Me(MethodView):
    @require("worker", "requester", "operator")
    @blp.response(200, MeSchema)
    def get(self) -> dict[str, Any]:
        """The caller's own account; for a worker its work and quality per job."""
        return _me()

    @require("requester")
    @blp.arguments(MeUpdateSchema)
    @blp.response(200, MeSchema)
    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        """A requester's settings: `carry_over_skills` (opt-in) makes aggregation ("auto") of
        each of its jobs start from its workers' skills on its earlier jobs."""
        session = get_session()
        account = session.get(Account, current_principal().id)
        assert account is not None
        account.carry_over_skills = body["carry_over_skills"]
        session.commit()
        return _me()


def _me() -> dict[str, Any]:
    """The caller's own account; for a worker its work and quality per job."""
    session = get_session()
    principal = current_principal()
    account = session.get(Account, principal.id)
    assert account is not None
    me: dict[str, Any] = {"id": account.id, "role": account.role, "name": account.name, "status": account.status}
    if account.role == "requester":
        me["carry_over_skills"] = account.carry_over_skills
    if account.role == "worker":
        me["assignments_submitted"] = session.execute(
            select(func.count()).where(Assignment.worker_id == account.id, Assignment.state == "submitted")
        ).scalar_one()
        me["answers"] = session.execute(select(func.count()).where(Answer.worker_id == account.id)).scalar_one()
        me["quality"] = own_quality(session, account.id)
        me["checks"] = settled_golden(session, account.id, utcnow())
        me["decisions"] = recent_decisions(session, account.id)
    if account.role in ("worker", "requester"):
        name = (ledger.worker_account if account.role == "worker" else ledger.requester_account)(account.id)
        me["currency"] = current_app.config["CURRENCY"]
        me["balance_cents"] = ledger.balance(session, name)
        me["history"] = ledger.history(session, name)
        if account.role == "worker":
            me["paid_out_cents"] = -ledger.account_total(session, name, "payout")
    return me


@blp.route("/me/key", methods=["POST"])
@require("worker", "requester", "operator")
@blp.arguments(KeyRotateSchema)
@blp.response(201, KeyRotatedSchema)
def rotate_own_key(body: dict[str, Any]) -> dict[str, Any]:
    """A new key for the caller, shown once; the key this request used keeps working for
    `grace_seconds` (default 3600, at most 7 days), so clients can move over."""
    session = get_session()
    key, until = rotate_key(session, current_principal().id, timedelta(seconds=body["grace_seconds"]))
    session.commit()
    return {"key": key, "old_key_valid_until": until}


@blp.route("/accounts/<id:account_id>/keys/revoke", methods=["POST"])
@require("operator")
@blp.arguments(KeyRevokeSchema)
@blp.response(200, KeyRevokedSchema)
def revoke_account_keys(body: dict[str, Any], account_id: int) -> dict[str, Any]:
    """Every key of the account stops working: at once on this process, within
    `auth.CACHE_SECONDS` (5 s) on the others. With `reissue`, a new key for the account is
    returned, once, for the operator to hand over."""
    session = get_session()
    forgotten, key = revoke_keys(session, account_id, current_principal().id, body["reason"], body["reissue"])
    session.commit()
    for key_hash in forgotten:
        auth.forget(key_hash)
    return {"account_id": account_id, "keys_revoked": len(forgotten), "key": key}
