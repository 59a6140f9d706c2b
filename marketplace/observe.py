"""The outermost WSGI layer: every request, the hot path's included, gets a request id (echoed
in `X-Request-Id`), its metrics and one JSON access line.

It wraps the whole app, so it sees the responses of the lease/submit middleware (`api/hot.py`)
as well as Flask's, and counts leases, 204s, submits and answers from what was answered rather
than inside the pool's code. The access line holds the method, path, route, status, time and
request id: never a header, a query string or a body (keys, golden answers).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from flask import Flask, request

from marketplace import logs, metrics

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

ROUTE_KEY = "marketplace.route"  # set by Flask for the routes it matched
LEASE_ROUTE = "/v1/assignments"
SUBMIT_ROUTE = "/v1/assignments/<id:assignment_id>/submit"
_SUBMIT_PATH = re.compile(r"/v1/assignments/[0-9]+/submit")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_log = logs.lines_logger("marketplace.access")


def request_id(environ: dict[str, Any]) -> str:
    """The caller's `X-Request-Id` when it is a plain token (a proxy's, to join their logs), else
    a new one."""
    given = environ.get("HTTP_X_REQUEST_ID", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def route_of(environ: dict[str, Any]) -> str:
    """The route template (bounded label values), not the path: Flask's match, or the hot path's."""
    route = environ.get(ROUTE_KEY)
    if route:
        return str(route)
    path = environ.get("PATH_INFO", "")
    if path == LEASE_ROUTE:
        return LEASE_ROUTE
    if _SUBMIT_PATH.fullmatch(path):
        return SUBMIT_ROUTE
    return "unmatched"


class Observe:
    """WSGI middleware (see the module)."""

    def __init__(self, app: Flask, inner: WsgiApp) -> None:
        self.app = app
        self.inner = inner

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = request_id(environ)
        environ["marketplace.request_id"] = rid
        answered: list[int] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answered.append(int(status[:3]))
            headers.append(("X-Request-Id", rid))
            return start_response(status, headers, exc_info)

        tokens = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            body = self.inner(environ, start)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
        status = answered[-1] if answered else 500
        method = environ.get("REQUEST_METHOD", "")
        route = route_of(environ)
        if method == "POST" and route == LEASE_ROUTE:
            metrics.lease_answered(status)
        elif method == "POST" and route == SUBMIT_ROUTE and status == 200:
            body = _read(body)  # a small JSON document: read to count its answers, handed on as bytes
            metrics.submit_answered(_answers(body))
        seconds = time.perf_counter() - started
        metrics.request_done(method, route, status, seconds)
        if self.app.config.get("ACCESS_LOG", True):
            _log.info(
                "request",
                request_id=rid,
                method=method,
                path=environ.get("PATH_INFO", ""),
                route=route,
                status=status,
                ms=round(seconds * 1000, 2),
            )
        return body


def _read(body: Iterable[bytes]) -> list[bytes]:
    chunks = list(body)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return chunks


def _answers(chunks: list[bytes]) -> int:
    try:
        return int(json.loads(b"".join(chunks))["answers"])
    except (ValueError, KeyError, TypeError):
        return 0


def init_app(app: Flask) -> None:
    """Flask tells the layer which route it matched; the layer goes outermost (create_app)."""

    @app.before_request
    def _route() -> None:
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule
