"""HTTP API v1: one flask-smorest blueprint per user group."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api
from werkzeug.routing import IntegerConverter

from marketplace.errors import Invalid
from marketplace.schemas import MAX_ID

MAX_IDEMPOTENCY_KEY = 200


def idempotency_key(value: str | None) -> str | None:
    """The request's `Idempotency-Key` header, checked: 1 to 200 characters when given."""
    if value is not None and not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY:
        raise Invalid("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return value


class IdConverter(IntegerConverter):
    """Positive ids that fit a BIGINT, so an absurd id is a 404, not a database error."""

    def __init__(self, map: object) -> None:  # noqa: A002 - werkzeug's name
        super().__init__(map, min=1, max=MAX_ID)


def init_app(app: Flask) -> Api:
    from marketplace.api import bodies

    bodies.init_app(app)
    app.url_map.converters["id"] = IdConverter
    api = Api(
        app,
        spec_kwargs={
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        },
    )
    api.register_converter(IdConverter, lambda _c: {"type": "integer", "minimum": 1, "maximum": MAX_ID})
    from marketplace.api import accounts, assignments, jobs, money, operators, rules, webhooks

    api.register_blueprint(accounts.blp)
    api.register_blueprint(jobs.blp)
    api.register_blueprint(assignments.blp)
    api.register_blueprint(operators.blp)
    api.register_blueprint(operators.audit_blp)
    api.register_blueprint(rules.blp)
    api.register_blueprint(money.blp)
    api.register_blueprint(webhooks.blp)
    return api
