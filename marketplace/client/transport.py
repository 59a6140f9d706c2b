"""HTTP underneath the client: the key, retries only where a request is safe to repeat, and
errors turned into typed exceptions.

A request is safe to repeat when it is a read (GET, HEAD), a DELETE, or a POST carrying an
`Idempotency-Key` (the server answers a repeat with the first result). Those are retried, with
exponential backoff and jitter, on connection errors and on 5xx answers. Any request is retried
when it never left (the connection was refused) and on a 429 (not processed, by definition).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from marketplace.client.errors import ConnectionFailed, ServerError, error_for

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})
# Errors raised before the request reached the server: repeating cannot do anything twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
MAX_DELAY = 30.0
USER_AGENT = "marketplace-client/1"


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


class Transport:
    """One `httpx.Client` with the bearer key; `request` returns a successful response or raises."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send, retrying as the module says; `idempotent` overrides what the method implies."""
        safe = self._safe(method, headers, idempotent)
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as error:
                if attempt >= self.retries or not (safe or isinstance(error, NOT_SENT)):
                    raise ConnectionFailed(f"{method} {path}: {type(error).__name__}: {error}") from error
            else:
                if response.status_code < 400:
                    return response
                if attempt >= self.retries or not self._retry_status(response.status_code, safe):
                    raise error_for(response)
                if response.status_code == 429:
                    self._sleep(attempt, response.headers.get("Retry-After"))
                    attempt += 1
                    continue
            self._sleep(attempt)
            attempt += 1

    def download(self, path: str, destination: Path, params: dict[str, Any]) -> Path:
        """Stream a GET into `destination`, atomically: a failed download leaves no partial file."""
        destination = Path(destination)
        partial = destination.with_name(f".{destination.name}.partial")
        attempt = 0
        while True:
            try:
                with self._stream("GET", path, params) as response, partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                os.replace(partial, destination)
                return destination
            except (httpx.TransportError, ServerError) as error:
                partial.unlink(missing_ok=True)
                if attempt >= self.retries:
                    if isinstance(error, ServerError):
                        raise
                    raise ConnectionFailed(f"GET {path}: {type(error).__name__}: {error}") from error
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            self._sleep(attempt)
            attempt += 1

    @contextmanager
    def _stream(self, method: str, path: str, params: dict[str, Any]) -> Iterator[httpx.Response]:
        with self._http.stream(method, path, params=params) as response:
            if response.status_code >= 400:
                response.read()
                raise error_for(response)
            yield response

    @staticmethod
    def _safe(method: str, headers: dict[str, str] | None, idempotent: bool | None) -> bool:
        if idempotent is not None:
            return idempotent
        return method.upper() in SAFE_METHODS or any(h.lower() == "idempotency-key" for h in headers or {})

    @staticmethod
    def _retry_status(status: int, safe: bool) -> bool:
        return status == 429 or (safe and status in RETRY_STATUSES)

    def _sleep(self, attempt: int, retry_after: str | None = None) -> None:
        """Exponential backoff with full jitter, or the server's `Retry-After` (seconds)."""
        if retry_after is not None:
            try:
                time.sleep(min(MAX_DELAY, max(0.0, float(retry_after))))
                return
            except ValueError:
                pass
        time.sleep(random.uniform(0, min(MAX_DELAY, self.backoff * 2**attempt)))
