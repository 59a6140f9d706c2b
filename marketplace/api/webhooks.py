"""Webhooks: a requester or an operator registers URLs for events and reads each hook's
deliveries; every hook is its owner's alone (another account's answers as a missing one)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from marketplace.auth import current_principal, require
from marketplace.db import get_session
from marketplace.models import Webhook
from marketplace.schemas import (
    DeliveryQuerySchema,
    DeliverySchema,
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookSchema,
)
from marketplace.services import webhooks

blp = Blueprint("webhooks", __name__, url_prefix="/v1", description="Webhooks: signed POSTs when things happen")


@blp.route("/webhooks")
class Webhooks(MethodView):
    @require("requester", "operator")
    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookCreatedSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Register a URL for events (requesters: `job.finished`, `aggregation.done` of their
        jobs; operators: `payout_run.done`). The answer holds the hook's signing secret, shown
        this once: keep it to verify deliveries (README, Webhooks)."""
        session = get_session()
        policy = webhooks.Policy.from_config(current_app.config)
        hook, secret = webhooks.register(
            session, current_principal(), body["url"], body.get("events"), body["description"], policy
        )
        session.commit()
        fields = ("id", "url", "events", "description", "created_at")
        return {**{name: getattr(hook, name) for name in fields}, "secret": secret}

    @require("requester", "operator")
    @blp.response(200, WebhookSchema(many=True))
    def get(self) -> list[Webhook]:
        """The caller's hooks (without their secrets)."""
        return webhooks.hooks_of(get_session(), current_principal())


@blp.route("/webhooks/<id:hook_id>")
class OneWebhook(MethodView):
    @require("requester", "operator")
    @blp.response(200, WebhookSchema)
    def get(self, hook_id: int) -> Webhook:
        """One of the caller's hooks."""
        return webhooks.own_hook(get_session(), current_principal(), hook_id)

    @require("requester", "operator")
    @blp.response(204)
    def delete(self, hook_id: int) -> None:
        """Delete one of the caller's hooks, with its deliveries (pending ones are not sent)."""
        session = get_session()
        webhooks.delete(session, current_principal(), hook_id)
        session.commit()


@blp.route("/webhooks/<id:hook_id>/deliveries")
class Deliveries(MethodView):
    @require("requester", "operator")
    @blp.arguments(DeliveryQuerySchema, location="query")
    @blp.response(200, DeliverySchema(many=True))
    def get(self, query: dict[str, Any], hook_id: int) -> Any:
        """The hook's deliveries, newest first, each with its attempts (time, HTTP status or
        error, milliseconds); `before` pages back."""
        return webhooks.deliveries_of(get_session(), current_principal(), hook_id, query["limit"], query.get("before"))
