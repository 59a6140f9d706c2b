"""Request bodies: checked before any view runs, so a body is never silently read as empty.

Without this, a JSON body sent without `Content-Type: application/json` (curl's `-d` sends
`application/x-www-form-urlencoded`) reached webargs as no body at all, and every required
field was reported missing. Now such a body is a 415 that names the content type to send, and
a body that does not parse is a 400 that names the position of the error. An endpoint that
reads other formats says so with `@accepts(...)` (adding items takes JSON Lines too).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Request, current_app, request

from marketplace.errors import PayloadTooLarge, ServiceError, UnsupportedMediaType

JSON = "application/json"
JSON_LINES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))

F = TypeVar("F", bound=Callable[..., Any])


def body_limit(config_key: str) -> Callable[[F], F]:
    """Mark a view as taking bodies up to the app's `config_key` bytes (the default:
    BODY_MAX_BYTES): a longer one is refused by its Content-Length before a byte is read
    (413), and a chunked one stops being read at the limit."""

    def mark(view: F) -> F:
        view.body_limit = config_key  # type: ignore[attr-defined]
        return view

    return mark


def accepts(*mimetypes: str) -> Callable[[F], F]:
    """Mark a view as reading these body types (JSON otherwise)."""

    def mark(view: F) -> F:
        view.body_types = frozenset(mimetypes)  # type: ignore[attr-defined]
        return view

    return mark


def position(error: ValueError) -> str:
    """Where a JSON text went wrong, for a person: line, column and character."""
    if isinstance(error, json.JSONDecodeError):
        return f"line {error.lineno}, column {error.colno} (char {error.pos}): {error.msg}"
    if isinstance(error, UnicodeDecodeError):
        return f"byte {error.start}: not UTF-8 ({error.reason})"
    return str(error)[:200]


def invalid_json(error: ValueError) -> ServiceError:
    where = position(error)
    return ServiceError(f"the body is not valid JSON: {where}", {"json": {"_body": [f"invalid JSON at {where}"]}})


class ApiRequest(Request):
    """Flask's request, whose JSON errors are ours: a 400 naming the position."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            raise _unsupported(self.mimetype, frozenset((JSON,)))
        raise invalid_json(e)


def _unsupported(mimetype: str, allowed: frozenset[str]) -> UnsupportedMediaType:
    sent = mimetype or "none"
    wanted = " or ".join(sorted(allowed, key=lambda t: (t != JSON, t)))
    return UnsupportedMediaType(
        f"send the body with Content-Type: {wanted} (this request's Content-Type: {sent})",
        {"headers": {"Content-Type": [f"must be {wanted}, not {sent}"]}},
    )


def _handler() -> Any:
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(getattr(view, "view_class", None), request.method.lower(), view)


def _body_types() -> frozenset[str]:
    return getattr(_handler(), "body_types", frozenset((JSON,)))  # type: ignore[no-any-return]


def _limit() -> int:
    return int(current_app.config[getattr(_handler(), "body_limit", "BODY_MAX_BYTES")])


def _has_body() -> bool:
    return bool(request.content_length) or request.headers.get("Transfer-Encoding", "").lower() == "chunked"


def check_body() -> None:
    """Before every view: a body is in a type the endpoint reads, and JSON parses (once: the
    parsed body is cached for the view)."""
    if request.method not in _BODY_METHODS or request.endpoint is None or not _has_body():
        return
    limit = _limit()
    if (request.content_length or 0) > limit:  # refused unread: a 53 MiB submit took 21 s to refuse
        raise PayloadTooLarge(
            f"the body is {request.content_length} bytes; this call takes at most {limit}",
            {"headers": {"Content-Length": [f"at most {limit} bytes for this call"]}},
        )
    if request.content_length is None:
        _read_chunked(limit)
    allowed = _body_types()
    if request.is_json and JSON in allowed:
        request.get_json()
    elif request.mimetype not in allowed:
        raise _unsupported(request.mimetype, allowed)


def _read_chunked(limit: int) -> None:
    """A chunked body (no Content-Length): read up to the limit, 413 past it; what was read is
    then the body, with its length, for everything after."""
    environ = request.environ
    data = environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the body is longer than {limit} bytes, the most this call takes")
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    for cached in ("stream", "content_length"):
        request.__dict__.pop(cached, None)


def init_app(app: Flask) -> None:
    app.request_class = ApiRequest
    app.before_request(check_body)
