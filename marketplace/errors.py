"""Domain errors raised by services, turned into JSON 4xx answers by the app.

Services never see a request; they raise these, and `register(app)` renders them in the
same shape flask-smorest uses for validation errors: `{"code", "status", "message", "errors"}`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES


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
        app.logger.exception("unhandled error: %s", type(error).__name__)
        return jsonify(error_body(500, "internal error")), 500
