"""The two hot endpoints, lease and submit, served without the framework when nothing is odd.

Why: measured in-process on PostgreSQL (`bench/profile_cycle.py`), Flask + flask-smorest +
webargs + marshmallow took more than half of the API's CPU for a lease+submit cycle, more
than the services and psycopg together. This WSGI middleware sits in front of the Flask app
and serves `POST /v1/assignments` and `POST /v1/assignments/{id}/submit` itself, calling the
same services (`marketplace/pool`), only for the plain case: a known worker key and a JSON body
that the schemas would take as it is (checked strictly here, with the schemas' limits: exact
types, no unknown fields). Anything else (no key, an unknown or non-worker key, a body the
strict check does not take) goes to the Flask app untouched, which authenticates, validates and
renders every refusal. So the API has one contract, written once in `schemas.py` and
`api/assignments.py`; this module only takes a shortcut through it (it imports no view), and
`tests/test_hot_path.py` checks that both give the same answers.

Refusals the services raise after a request was taken here (expired, not yours, banned, ...)
are rendered with `errors.error_body`, the shape the Flask handlers use.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from marketplace import auth, queue
from marketplace.api import idempotency_key
from marketplace.db import get_hot_engine
from marketplace.errors import RETRY_AFTER_SECONDS, ServiceError, database_unavailable, error_body, unavailable_body
from marketplace.models import Role, utcnow
from marketplace.pool import lease, submit
from marketplace.schemas import MAX_ANSWERS, MAX_ID, MAX_LABEL, MAX_LABELS, MAX_OBJECTS
from marketplace.services import submitted
from marketplace.settings import LeaseLimits

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_SUBMIT_PATH = re.compile(r"/v1/assignments/([1-9][0-9]{0,18})/submit")
_MAX_BODY = 64 * 1024  # a submit of 100 answers with long labels is ~25 KB; larger goes the long way
_JSON = [("Content-Type", "application/json")]


def _an_id(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_ID


def lease_body(body: Any) -> int | None | bool:
    """The job id of a lease body the schema takes as it is: None for no job, False when the
    body is not that plain (the Flask app then decides)."""
    if body is None or body == {}:
        return None
    if type(body) is dict and body.keys() == {"job_id"} and _an_id(body["job_id"]):
        return int(body["job_id"])
    return False


def _plain_label(label: Any) -> bool:
    # PostgreSQL text refuses NUL: the schema names the field
    return type(label) is str and 1 <= len(label) <= MAX_LABEL and "\x00" not in label


def _plain_answer(answer: Any) -> bool:
    """One answer as `AnswerInSchema` takes it: a label, a list of labels or a list of objects
    (checked in depth by the pool, whichever way the submit came)."""
    if type(answer) is not dict or len(answer) != 2 or not _an_id(answer.get("item_id")):
        return False
    if "label" in answer:
        return _plain_label(answer["label"])
    if "labels" in answer:
        labels = answer["labels"]
        return type(labels) is list and len(labels) <= MAX_LABELS and all(_plain_label(x) for x in labels)
    if "objects" in answer:
        objects = answer["objects"]
        return (
            type(objects) is list
            and len(objects) <= MAX_OBJECTS
            and all(type(o) is dict and not any("\x00" in k for k in o) for o in objects)
        )
    return False


def submit_answers(body: Any) -> list[dict[str, Any]] | None:
    """The answers of a submit body the schema takes as it is, or None when it is not that plain."""
    if type(body) is not dict or body.keys() != {"answers"}:
        return None
    answers = body["answers"]
    if type(answers) is not list or not 1 <= len(answers) <= MAX_ANSWERS:
        return None
    seen: set[int] = set()
    for answer in answers:
        if not _plain_answer(answer) or answer["item_id"] in seen:
            return None
        seen.add(answer["item_id"])
    return answers  # type: ignore[no-any-return]


def task_json(task: lease.LeasedTask) -> dict[str, Any]:
    """`AssignmentSchema().dump(task)` for a fresh lease (the test compares the two)."""
    body = {
        "id": task.id,
        "kind": task.kind,
        "state": task.state,
        "items": [{"id": item["id"], "data": item["data"]} for item in task.items],
        "expires_at": task.expires_at.isoformat(),
        "job": {key: task.job[key] for key in ("id", "title", "instructions", "annotation") if key in task.job},
    }
    if task.pay is not None:
        body["pay"] = task.pay
    return body


def submit_json(result: submit.SubmitResult) -> dict[str, Any]:
    """`SubmitResultSchema().dump(result)` (the test compares the two)."""
    body: dict[str, Any] = {
        "id": result.id,
        "state": result.state,
        "answers": result.answers,
        "submitted_at": result.submitted_at.isoformat() if result.submitted_at else None,
    }
    if result.qualification is not None:
        body["qualification"] = result.qualification
    return body


class HotPath:
    """WSGI middleware: lease and submit the short way when the request is plain (see module)."""

    def __init__(self, app: Flask, inner: WsgiApp) -> None:
        self.app = app
        self.inner = inner

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and self.app.config.get("HOT_PATH", True):
            path = environ.get("PATH_INFO", "")
            if path == "/v1/assignments":
                return self._take(environ, start_response, None)
            match = _SUBMIT_PATH.fullmatch(path)
            if match and int(match.group(1)) <= MAX_ID:
                return self._take(environ, start_response, int(match.group(1)))
        return self.inner(environ, start_response)

    def _take(self, environ: dict[str, Any], start_response: StartResponse, assignment_id: int | None) -> Any:
        """Serve it here, or hand it on with its body as it came."""
        body, raw, parsed = self._body(environ)
        if parsed:
            with self.app.app_context():
                try:
                    served = self._serve(environ, body, assignment_id)
                except ServiceError as error:
                    served = error.status, error_body(error.status, error.message, error.errors)
                except Exception as error:  # as the Flask app's handlers do (`errors.register`)
                    if not database_unavailable(error):
                        log.exception("unhandled error on the hot path")
                        return _respond(start_response, 500, error_body(500, "internal error"))
                    log.warning("database unavailable: %s", type(error).__name__)
                    retry = [("Retry-After", str(RETRY_AFTER_SECONDS))]
                    return _respond(start_response, 503, unavailable_body(), retry)
            if served is not None:
                return _respond(start_response, *served)
        if raw is not None:
            environ["wsgi.input"] = io.BytesIO(raw)
        return self.inner(environ, start_response)

    @staticmethod
    def _body(environ: dict[str, Any]) -> tuple[Any, bytes | None, bool]:
        """(parsed JSON body, the bytes read, whether it parsed); a body that is not plainly
        JSON is left unread (None bytes)."""
        if "HTTP_TRANSFER_ENCODING" in environ:  # a chunked body: left to werkzeug's reader
            return None, None, False
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None, None, False
        if length == 0:
            return None, None, True
        content_type = environ.get("CONTENT_TYPE", "")
        if not 0 < length <= _MAX_BODY or content_type.split(";")[0].strip() != "application/json":
            return None, None, False
        raw = environ["wsgi.input"].read(length)
        try:
            return json.loads(raw), raw, True
        except ValueError:
            return None, raw, False

    def _serve(self, environ: dict[str, Any], body: Any, assignment_id: int | None) -> tuple[int, Any] | None:
        """(status, JSON body) when served here; None to hand the request on."""
        worker_id = self._worker(environ)
        if worker_id is None:
            return None
        if assignment_id is None:
            return self._lease(worker_id, body, environ)
        return self._submit(worker_id, assignment_id, body, environ)

    def _key(self, environ: dict[str, Any]) -> str | None:
        return idempotency_key(environ.get("HTTP_IDEMPOTENCY_KEY"))  # refused as the app does

    @staticmethod
    def _worker(environ: dict[str, Any]) -> int | None:
        """The caller's id when its key is a worker's (`auth.lookup`, cached); else the app decides."""
        scheme, _, key = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        principal = auth.lookup(auth.hash_key(key.strip()))
        if principal is None or principal.role != Role.WORKER:
            return None
        return principal.id

    def _lease(self, worker_id: int, body: Any, environ: dict[str, Any]) -> tuple[int, Any] | None:
        job_id = lease_body(body)
        if job_id is False:
            return None
        limits = LeaseLimits.from_config(self.app.config)
        task = lease.lease_task(get_hot_engine(), worker_id, job_id or None, key=self._key(environ), limits=limits)
        if task is None:
            return 204, None
        return 201, task_json(task)

    def _submit(self, worker_id: int, assignment_id: int, body: Any, environ: dict[str, Any]) -> tuple[int, Any] | None:
        answers = submit_answers(body)
        if answers is None:
            return None
        key = self._key(environ)
        engine, config = get_hot_engine(), self.app.config
        result = submit.submit(engine, worker_id, assignment_id, answers, key, utcnow())
        result = submitted.follow_up(
            engine, queue.get_redis(), config["QUEUE_NAME"], config["AGGREGATE_EVERY_ANSWERS"], result, worker_id
        )
        return 200, submit_json(result)


def _respond(
    start_response: StartResponse, status: int, body: Any, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    if body is None:
        start_response(f"{status} {HTTP_STATUS_CODES[status]}", [])
        return []
    data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
    reason = HTTP_STATUS_CODES.get(status, "Error")
    start_response(f"{status} {reason}", [*_JSON, ("Content-Length", str(len(data))), *(headers or [])])
    return [data]
