"""Rate limits per key and per address, counted in Redis so every process shares them.

A WSGI layer in front of the hot-path middleware (`api/hot.py`), because that middleware
serves plain leases and submits before Flask sees them: a limit applied inside Flask would
miss most of them. It uses `limits` (the engine under Flask-Limiter) with fixed windows:

- leases and submits, per worker key (`MARKETPLACE_RATE_LIMIT_LEASES`, `..._SUBMITS`);
- item uploads, per requester key (`..._UPLOADS`);
- failed authentications (401s), per client address (`..._FAILED_AUTH`): an address past it
  gets 429 instead of 401 for further unknown keys until the window ends. Only a failure costs a
  Redis call: each process remembers which addresses are over, so requests with good keys pay
  nothing for this limit.

A refusal is a 429 with `Retry-After` (seconds to the window's end) in the API's error shape.
Keys are counted by their SHA-256, never stored. If Redis is unreachable requests pass: the
limits protect the service, they must not take it down.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from marketplace import auth, metrics, queue
from marketplace.errors import error_body

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_SUBMIT = re.compile(r"/v1/assignments/[0-9]+/submit")
_UPLOAD = re.compile(r"/v1/jobs/[0-9]+/items")
NAMES = ("leases", "submits", "uploads", "failed_auth")


def _limit(text: str | None) -> RateLimitItem | None:
    return parse(text) if text else None


class RateLimits:
    """WSGI middleware (see the module)."""

    def __init__(self, app: Flask, inner: WsgiApp) -> None:
        self.app = app
        self.inner = inner
        self.rules = {name: _limit(app.config.get(f"RATE_LIMIT_{name.upper()}")) for name in NAMES}
        storage = RedisStorage("redis://", connection_pool=queue.get_redis(app).connection_pool)
        self.strategy = FixedWindowRateLimiter(storage)
        self._over: dict[str, float] = {}  # address -> until when it is past the failed-auth limit
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.app.config.get("RATE_LIMITS", True):
            return self.inner(environ, start_response)
        name = self._keyed_limit(environ)
        if name is not None:
            key_hash = _key_hash(environ)
            if key_hash is not None:
                refused = self._hit(name, key_hash)
                if refused is not None:
                    return _refuse(start_response, name, refused)
        address = environ.get("REMOTE_ADDR", "")
        over_until = self._over.get(address)
        if over_until is not None and over_until < time.time():
            with self._lock:
                self._over.pop(address, None)
            over_until = None
        status: list[int] = []

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(int(status_line[:3]))
            return start_response(status_line, headers, exc_info)

        if over_until is None:
            body = self.inner(environ, start)
            if status and status[-1] == 401:
                self._failed(address)
            return body
        # Past the limit: an unknown key gets a 429 in place of its 401; a good one is served.
        buffered: list[tuple[str, list[tuple[str, str]], Any]] = []
        body = self.inner(environ, lambda s, h, e=None: buffered.append((s, h, e)))
        if buffered and buffered[-1][0].startswith("401"):
            close = getattr(body, "close", None)
            if close is not None:
                close()
            return _refuse(start_response, "failed_auth", over_until - time.time())
        if buffered:
            start_response(*buffered[-1])
        return body

    def _keyed_limit(self, environ: dict[str, Any]) -> str | None:
        if environ.get("REQUEST_METHOD") != "POST":
            return None
        path = environ.get("PATH_INFO", "")
        if path == "/v1/assignments":
            return "leases"
        if _SUBMIT.fullmatch(path):
            return "submits"
        if _UPLOAD.fullmatch(path):
            return "uploads"
        return None

    def _hit(self, name: str, identity: str) -> float | None:
        """Count one; None when allowed, else the seconds until the window ends."""
        rule = self.rules[name]
        if rule is None:
            return None
        try:
            if self.strategy.hit(rule, name, identity):
                return None
            return self.strategy.get_window_stats(rule, name, identity).reset_time - time.time()
        except RedisError as error:
            log.warning("rate limit %s not checked: %s", name, type(error).__name__)
            return None

    def _failed(self, address: str) -> None:
        """Count a 401; the address is over once it has used up its failures in this window."""
        rule = self.rules["failed_auth"]
        if rule is None:
            return
        try:
            self.strategy.hit(rule, "failed_auth", address)
            stats = self.strategy.get_window_stats(rule, "failed_auth", address)
        except RedisError as error:
            log.warning("rate limit failed_auth not counted: %s", type(error).__name__)
            return
        if stats.remaining <= 0:
            with self._lock:
                self._over[address] = stats.reset_time


def _key_hash(environ: dict[str, Any]) -> str | None:
    scheme, _, key = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None  # the app answers 401
    return auth.hash_key(key.strip())


def _refuse(start_response: StartResponse, name: str, seconds: float) -> list[bytes]:
    metrics.rate_limited(name)
    retry_after = str(max(1, math.ceil(seconds)))
    message = f"rate limit reached ({name.replace('_', ' ')}); retry after {retry_after} s"
    data = json.dumps(error_body(429, message)).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Retry-After", retry_after)]
    start_response("429 Too Many Requests", headers)
    return [data]
