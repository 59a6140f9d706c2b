"""A Python client for the marketplace's HTTP API, for requesters, workers and operators.

Imports httpx, tqdm and the standard library only (pandas inside `results_frame`), never the
server's Flask or database code, so it installs and runs anywhere the API is reachable::

    from marketplace.client import Client

    requester = Client("http://127.0.0.1:8000", key)
    job = requester.create_job({"title": ..., "instructions": ..., "annotation": {...}})
    requester.add_items(job["id"], "items.jsonl")   # a progress bar; resumable
    requester.launch(job["id"])
    requester.wait(job["id"])                       # answers collected of wanted, with an ETA
    frame = requester.results_frame(job["id"])

    worker = Client("http://127.0.0.1:8000", worker_key)
    for task in worker.tasks():
        task.submit({item["id"]: "cat" for item in task.items})
"""

from __future__ import annotations

from typing import Any

import httpx

from marketplace.client.errors import (
    ApiError,
    BadRequest,
    ClientError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    LeaseExpired,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    Unprocessable,
    UploadError,
    WaitTimeout,
)
from marketplace.client.operator import OperatorCalls
from marketplace.client.requester import RequesterCalls, Upload
from marketplace.client.transport import Transport, new_idempotency_key
from marketplace.client.worker import Task, WorkerCalls

__all__ = [
    "ApiError",
    "BadRequest",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "LeaseExpired",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Task",
    "Unauthorized",
    "Unprocessable",
    "Upload",
    "UploadError",
    "WaitTimeout",
    "new_idempotency_key",
]


class Client(RequesterCalls, WorkerCalls, OperatorCalls):
    """The API at `base_url` as the account of `key`; which calls succeed depends on its role.

    `retries` and `backoff` (seconds, doubled per attempt, with jitter) apply to calls safe to
    repeat (see `marketplace.client.transport`); `progress` turns the bars on or off (default:
    on when stderr is a terminal); `transport` is an httpx transport (tests, proxies).
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        progress: bool | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = Transport(base_url, key, timeout=timeout, retries=retries, backoff=backoff, transport=transport)
        self._progress = progress

    def __repr__(self) -> str:  # never the key
        return f"Client({self.base_url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def me(self) -> dict[str, Any]:
        """Your own account: role, status; workers: earnings, quality; requesters: funds."""
        return self._http.request("GET", "/v1/me").json()  # type: ignore[no-any-return]
