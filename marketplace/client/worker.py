"""Workers' calls: `for task in client.tasks(): task.submit(answers)`.

A task knows its lease's deadline on the local monotonic clock, computed from the server's own
`Date` and `expires_at` so a skewed local clock does not matter; `submit` refuses to send after
it (`LeaseExpired`). A task left neither submitted nor skipped when the loop moves on (or stops)
is skipped, so its items go back to the pool at once instead of when the lease runs out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from marketplace.client.errors import ClientError, LeaseExpired
from marketplace.client.transport import Transport, new_idempotency_key

Answers = Sequence[Mapping[str, Any]] | Mapping[int, Any]
DATE_RESOLUTION = 1.0  # seconds
NO_WORK_BACKOFF = (1.0, 30.0)  # seconds: first wait after a 204, and the most


class Task:
    """A leased task: `id`, `kind`, `job` (title, instructions, annotation), `items`
    (each `{"id", "data"}`), `expires_at`, and `raw`, the lease answer as the server sent it."""

    def __init__(self, http: Transport, response: httpx.Response) -> None:
        self._http = http
        self.raw: dict[str, Any] = response.json()
        self.id: int = self.raw["id"]
        self.kind: str = self.raw.get("kind", "task")
        self.job: dict[str, Any] = self.raw["job"]
        self.items: list[dict[str, Any]] = self.raw["items"]
        self.expires_at = _aware(datetime.fromisoformat(self.raw["expires_at"]))
        self.state = "leased"
        self._key: str | None = None
        # `Date` has whole seconds (the server's clock is up to 1 s past it): count 1 s less.
        left = (self.expires_at - _server_time(response)).total_seconds() - DATE_RESOLUTION
        self._deadline = time.monotonic() + left

    def __repr__(self) -> str:
        return f"Task(id={self.id}, job={self.job.get('id')}, items={len(self.items)}, state={self.state})"

    @property
    def labels(self) -> list[str]:
        return list(self.job.get("annotation", {}).get("labels", []))

    def seconds_left(self) -> float:
        return self._deadline - time.monotonic()

    def submit(self, answers: Answers, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Answer every item: a list of API answers (`{"item_id", "label"}`, or the geometry
        shapes), or a mapping item id -> label (or -> the rest of the answer). Sent with an
        `Idempotency-Key` (the same one on every retry of this task), so it counts once."""
        if self.state != "leased":
            raise ClientError(f"task {self.id} is already {self.state}")
        if self.seconds_left() <= 0:
            raise LeaseExpired(f"task {self.id}: the lease ran out at {self.expires_at.isoformat()}; nothing was sent")
        self._key = idempotency_key or self._key or new_idempotency_key()
        result = self._http.request(
            "POST",
            f"/v1/assignments/{self.id}/submit",
            json={"answers": _answer_list(answers)},
            headers={"Idempotency-Key": self._key},
        ).json()
        self.state = "submitted"
        return result  # type: ignore[no-any-return]

    def skip(self) -> dict[str, Any]:
        """Give the task back; its items go to other workers."""
        result = self._http.request("POST", f"/v1/assignments/{self.id}/skip").json()
        self.state = "skipped"
        return result  # type: ignore[no-any-return]


class WorkerCalls:
    _http: Transport

    def lease(self, job_id: int | None = None, *, idempotency_key: str | None = None) -> Task | None:
        """Lease the next task (of one job, or any); None when there is no work now (204).

        Sent with an `Idempotency-Key` (generated when not given), so a lease whose answer was
        lost on the way is retried and the server hands back the task it leased, instead of
        that task sitting leased to nobody until its deadline."""
        body = {"job_id": job_id} if job_id is not None else None
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        response = self._http.request("POST", "/v1/assignments", json=body, headers=headers)
        return None if response.status_code == 204 else Task(self._http, response)

    def tasks(self, job_id: int | None = None, *, wait_for_work: bool = False) -> Generator[Task, None, None]:
        """Lease tasks one after another. Without `wait_for_work` it ends at the first "no work
        now"; with it, it asks again with backoff (1 s doubling to 30 s) until the loop stops."""
        delay = NO_WORK_BACKOFF[0]
        task: Task | None = None
        try:
            while True:
                task = self.lease(job_id)
                if task is None:
                    if not wait_for_work:
                        return
                    time.sleep(delay)
                    delay = min(NO_WORK_BACKOFF[1], delay * 2)
                    continue
                delay = NO_WORK_BACKOFF[0]
                yield task
                _give_back(task)
        finally:
            if task is not None:
                _give_back(task)

    def assignment(self, assignment_id: int) -> dict[str, Any]:
        """One of your own tasks, with its state and, once decided, the decision."""
        return self._http.request("GET", f"/v1/assignments/{assignment_id}").json()  # type: ignore[no-any-return]


def _give_back(task: Task) -> None:
    """Skip a task the caller neither submitted nor skipped (a refusal is fine: the lease ran out)."""
    if task.state == "leased":
        with contextlib.suppress(ClientError):  # else the lease runs out on its own; nothing is lost
            task.skip()


def _answer_list(answers: Answers) -> list[dict[str, Any]]:
    if isinstance(answers, Mapping):
        return [
            {"item_id": item_id, **value} if isinstance(value, Mapping) else {"item_id": item_id, "label": value}
            for item_id, value in answers.items()
        ]
    return [dict(answer) for answer in answers]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _server_time(response: httpx.Response) -> datetime:
    """The server's clock at the answer (its `Date` header), else ours."""
    try:
        return _aware(parsedate_to_datetime(response.headers["Date"]))
    except (KeyError, TypeError, ValueError):
        return datetime.now(UTC)
