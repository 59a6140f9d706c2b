"""What the client raises: the server's error (`code`, `message`, `errors`) as a typed exception,
or the client's own reasons (the network, a lease past its deadline, an upload to resume)."""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """Anything `marketplace.client` raises."""


class ApiError(ClientError):
    """An error answer of the API: `{"code", "status", "message", "errors"}`.

    `errors` names each bad field as the server does, e.g.
    `{"json": {"answers": {"2": {"label": ["Must be one of: cat, dog."]}}}}`.
    """

    def __init__(self, status: int, code: int | str | None, message: str, errors: Any = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        detail = f" {errors}" if errors else ""
        super().__init__(f"{status}: {message}{detail}")


class BadRequest(ApiError):
    """400: the request could not be read."""


class Unauthorized(ApiError):
    """401: no key, or a key the server does not know."""


class Forbidden(ApiError):
    """403: the key's role may not do this, or the account cannot take work (banned)."""


class NotFound(ApiError):
    """404: no such object, or not yours (tenants are walls: the two look the same)."""


class Conflict(ApiError):
    """409: the object's state forbids it (e.g. launching a running job, submitting twice)."""


class Unprocessable(ApiError):
    """422: well-formed input the server refused; `errors` names the field and the reason."""


class RateLimited(ApiError):
    """429: too many requests; retried after the server's `Retry-After` before this is raised."""


class ServerError(ApiError):
    """5xx: the server failed (retried first when the call is safe to repeat)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Unprocessable,
    429: RateLimited,
}


def error_for(response: httpx.Response) -> ApiError:
    """The typed error for an error response, with the server's fields when it sent JSON."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"message": (response.text or response.reason_phrase)[:500]}
    kind = ServerError if status >= 500 else _BY_STATUS.get(status, ApiError)
    message = str(body.get("message") or body.get("status") or response.reason_phrase)
    return kind(status, body.get("code", status), message, body.get("errors"))


class ConnectionFailed(ClientError):
    """The server could not be reached (after the retries the call allowed)."""


class LeaseExpired(ClientError):
    """The task's lease ran out before the answers were sent: nothing was submitted."""


class WaitTimeout(ClientError):
    """`wait` gave up before the job was done; `job` is the last state seen."""

    def __init__(self, message: str, job: dict[str, Any]) -> None:
        super().__init__(message)
        self.job = job


class UploadError(ClientError):
    """A batch of items failed; everything before `start` is stored. Resume with
    `add_items(job_id, source, start=error.start)` once the cause is fixed.

    `maybe_stored` is true when the connection broke after the batch was sent: the server may
    have stored it (one transaction: all of it or none). `item_errors` maps the index of each
    refused item in the whole source to the server's reasons.
    """

    def __init__(
        self,
        start: int,
        batch_size: int,
        cause: ClientError,
        maybe_stored: bool = False,
        item_errors: dict[int, Any] | None = None,
    ) -> None:
        self.start = start
        self.batch_size = batch_size
        self.cause = cause
        self.maybe_stored = maybe_stored
        self.item_errors = item_errors or {}
        if item_errors:
            shown = "; ".join(f"item {i}: {reason}" for i, reason in list(item_errors.items())[:5])
            what = f"items refused ({shown}{'; ...' if len(item_errors) > 5 else ''})"
        else:
            what = str(cause)
        if maybe_stored:
            advice = (
                f"the batch of items {start}..{start + batch_size - 1} may have been stored before the connection "
                f"broke: check the job's item count, then resume with start={start} or start={start + batch_size}"
            )
        else:
            advice = f"items from {start} on were not stored: resume with start={start}"
        super().__init__(f"{what}; {advice}")
