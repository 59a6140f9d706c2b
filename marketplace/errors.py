"""Domain errors raised by services, turned into JSON 4xx answers by the app.

Services never see a request; they raise these, and `register(app)` renders them in the
same shape flask-smorest uses for validation errors: `{"code", "status", "message", "errors"}`.
"""

from __future__ import annotations

from typing import Any

import psycopg
from flask import Flask, jsonify
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

# How long a client should wait before retrying while the database cannot be reached.
RETRY_AFTER_SECONDS = 2
UNAVAILABLE = f"the database is unavailable; retry after {RETRY_AFTER_SECONDS} s"


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class UnsupportedMediaType(ServiceError):
    """A body in a format the endpoint does not read (today: JSON sent without saying so)."""

    status = 415


class PayloadTooLarge(ServiceError):
    status = 413


class Unprocessable(ServiceError):
    """Well-formed input that fails validation (marshmallow's messages as they are)."""

    status = 422


class Invalid(ServiceError):
    """Bad input found past the schema (needs the database to tell): names the field."""

    status = 422

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", {"json": _nest(field, reason)})


def _nest(path: str, reason: str) -> dict[str, Any]:
    parts = path.split(".")
    node: dict[str, Any] = {parts[-1]: [reason]}
    for part in reversed(parts[:-1]):
        node = {part: node}
    return node


def error_body(status: int, message: str | None = None, errors: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": status, "status": HTTP_STATUS_CODES.get(status, "Error")}
    if message:
        body["message"] = message
    if errors:
        body["errors"] = errors
    return body


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database could not serve the request now but may soon: the
    server is down, starting or stopping, a connection was lost, the pool is exhausted, or a
    transaction lost a deadlock or a serialization race. The client should retry: 503 with
    `Retry-After` (the hot path's and the Flask app's answer), never a 500. psycopg's own
    errors come raw from the hot path, wrapped by SQLAlchemy elsewhere."""
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        error = error.orig
    transient = (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        sa_exc.DisconnectionError,
        sa_exc.TimeoutError,
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
    )
    return isinstance(error, transient)


def unavailable_body() -> dict[str, Any]:
    return error_body(503, UNAVAILABLE)


def register(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> Any:
        return jsonify(error_body(error.status, error.message, error.errors)), error.status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Any:
        """JSON for every HTTP error, keeping the error's own headers (e.g. `Allow` on 405)."""
        status = error.code or 500
        data = getattr(error, "data", {}) or {}
        body = error_body(status, data.get("message") or error.description, data.get("messages"))
        response = jsonify(body)
        response.status_code = status
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        headers = data.get("headers") or {}
        response.headers.update(headers)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Any:
        if database_unavailable(error):
            app.logger.warning("database unavailable: %s", type(error).__name__)
            return jsonify(unavailable_body()), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
        app.logger.exception("unhandled error: %s", type(error).__name__)
        return jsonify(error_body(500, "internal error")), 500
