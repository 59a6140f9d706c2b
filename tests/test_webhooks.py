"""Webhooks (issue 16 item 5): registered per account, signed deliveries to a receiver on
loopback for job.finished, aggregation.done and payout_run.done, retried by RQ after a failure,
one delivery per event and hook, a delivery log, and tenant walls."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import func, select, update

from marketplace import queue
from marketplace.db import dispose, get_engine, session_scope
from marketplace.models import Webhook, WebhookDelivery, utcnow
from marketplace.services import webhooks
from tests.conftest import REDIS_URL, bearer, make_app, new_key, post_job, work_through
from tests.faults import RqWorker, wait_for
from tests.serving import environment
from tests.test_api_bad_input import assert_error, count_rows, snapshot

Headers = dict[str, str]


def verify(secret: str, headers: Any, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, as the README writes it."""
    timestamp = headers["X-Marketplace-Timestamp"]
    signed = timestamp.encode() + b"." + body
    expected = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(expected, headers["X-Marketplace-Signature"])


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """An HTTP server on loopback that records every POST and answers with the statuses in
    `script` first, then 200."""

    calls: list[Call] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    url: str = ""

    def types(self) -> list[str]:
        return [c.event["type"] for c in self.calls]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state.calls.append(Call(self.path, dict(self.headers), body, time.monotonic()))
                status = state.script.pop(0) if state.script else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/hooks/marketplace?tenant=7"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook_app(database_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The app and the RQ jobs' app (built from the environment, as `marketplace worker`'s),
    with loopback URLs allowed and a failed attempt retried at once (RQ `Retry` with no wait)."""
    import workers.jobs

    settings = {"WEBHOOK_ALLOW_PRIVATE_ADDRESSES": True, "WEBHOOK_RETRY_SECONDS": [0, 0]}
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    for name, value in settings.items():
        monkeypatch.setenv(f"MARKETPLACE_{name}", json.dumps(value))
    workers.jobs._apps.clear()
    app = make_app(database_url, **settings)
    yield app
    dispose(app)
    workers.jobs._apps.clear()


def _work_queue(app: Flask) -> None:
    redis = queue.get_redis(app)
    SimpleWorker([queue.get_queue(redis, app.config["QUEUE_NAME"])], connection=redis).work(burst=True)


def _register(client: FlaskClient, headers: Headers, url: str, **extra: Any) -> dict[str, Any]:
    made = client.post("/v1/webhooks", json={"url": url, **extra}, headers=headers)
    assert made.status_code == 201, made.get_json()
    return made.get_json()  # type: ignore[no-any-return]


def test_hooks_are_their_owners_and_bad_ones_are_refused(
    app: Flask, client: FlaskClient, requester: Headers, operator: Headers
) -> None:
    hook = _register(client, requester, "https://example.com/hooks", description="results")
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["events"] == ["job.finished", "aggregation.done"]  # a requester's, by default
    listed = client.get("/v1/webhooks", headers=requester).get_json()
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    mine = client.get(f"/v1/webhooks/{hook['id']}", headers=requester).get_json()
    assert mine["url"] == "https://example.com/hooks" and "secret" not in mine

    other = bearer(new_key(app, "requester", "other"))
    worker = bearer(new_key(app, "worker", "w"))
    before = snapshot(app), count_rows(app, Webhook)
    assert client.get("/v1/webhooks", headers=other).get_json() == []
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/deliveries")):
        path = f"/v1/webhooks/{hook['id']}{suffix}"
        theirs = assert_error(client.open(path, method=method, headers=other), 404)
        missing = assert_error(client.open(f"/v1/webhooks/987654{suffix}", method=method, headers=other), 404)
        assert theirs["message"].replace(str(hook["id"]), "N") == missing["message"].replace("987654", "N")
        assert_error(client.open(path, method=method, headers=operator), 404)  # an operator's are its own too
    assert_error(client.post("/v1/webhooks", json={"url": "https://example.com"}, headers=worker), 403)
    assert_error(client.get("/v1/webhooks", headers=worker), 403)

    refusals = [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https:///nohost"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": "http://127.0.0.1:9/x"}, "url"),  # loopback: not in production settings
        ({"url": "http://10.1.2.3/x"}, "url"),
        ({"url": "http://[::1]/x"}, "url"),
        ({"url": "http://localhost/x"}, "url"),
        ({"url": "https://example.com", "events": ["payout_run.done"]}, "events"),
        ({"url": "https://example.com", "events": ["job.started"]}, "events"),
        ({"url": "https://example.com", "events": []}, "events"),
    ]
    for body, name in refusals:
        assert_error(client.post("/v1/webhooks", json=body, headers=other), 422, name)
    assert_error(
        client.post("/v1/webhooks", json={"url": "https://example.com", "events": ["job.finished"]}, headers=operator),
        422,
        "events",
    )
    assert (snapshot(app), count_rows(app, Webhook)) == before

    payouts = _register(client, operator, "https://ops.example.com/x")
    assert payouts["events"] == ["payout_run.done"]
    deleted = client.delete(f"/v1/webhooks/{hook['id']}", headers=requester)
    assert deleted.status_code == 204
    assert client.get("/v1/webhooks", headers=requester).get_json() == []
    assert_error(client.get(f"/v1/webhooks/{hook['id']}", headers=requester), 404)


def test_a_finished_job_is_told_signed_once_per_event(hook_app: Flask, receiver: Receiver, redis: Redis) -> None:
    client = hook_app.test_client()
    requester = bearer(new_key(hook_app, "requester", "req"))
    hook = _register(client, requester, receiver.url)
    other = bearer(new_key(hook_app, "requester", "other"))
    _register(client, other, receiver.url + "&other=1")  # another requester's hook: told nothing of this job
    job = post_job(client, requester, items=10, golden=2, overlap=2, items_per_task=5)
    for n in range(3):
        work_through(client, bearer(new_key(hook_app, "worker", f"w{n}")), job["id"])
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["state"] == "completed"
    _work_queue(hook_app)  # aggregation, decisions, then the deliveries

    assert sorted(receiver.types()) == ["aggregation.done", "job.finished"]
    assert all(c.path == "/hooks/marketplace?tenant=7" for c in receiver.calls)
    for call in receiver.calls:
        assert verify(hook["secret"], call.headers, call.body)
        assert not verify(hook["secret"] + "x", call.headers, call.body)
        assert call.headers["X-Marketplace-Event-Id"] == call.event["id"]
        assert call.headers["X-Marketplace-Event-Type"] == call.event["type"]
        assert call.event["data"]["job_id"] == job["id"]
    finished = next(c.event for c in receiver.calls if c.event["type"] == "job.finished")
    assert finished["data"]["results"] == f"/v1/jobs/{job['id']}/results"
    assert finished["data"]["items"] == 10

    policy = webhooks.Policy.from_config(hook_app.config)
    with session_scope(get_engine(hook_app)) as session:  # the sweep finds the same events again
        assert webhooks.record_events(session, utcnow(), policy) == []
    import workers.jobs

    workers.jobs.sweep()
    _work_queue(hook_app)
    assert len(receiver.calls) == 2
    log = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=requester).get_json()
    assert {d["event_type"] for d in log} == {"job.finished", "aggregation.done"}
    for delivery in log:
        assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("delivered", 1, 200)
        assert [a["status"] for a in delivery["log"]] == [200]
    page = client.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=1", headers=requester).get_json()
    rest = client.get(f"/v1/webhooks/{hook['id']}/deliveries?before={page[0]['id']}", headers=requester).get_json()
    assert [d["id"] for d in page + rest] == [d["id"] for d in log]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'marketplace_webhook_deliveries{state="delivered"} 2.0' in metrics


def test_a_failed_delivery_is_retried_by_rq_with_the_same_event(
    hook_app: Flask, receiver: Receiver, redis: Redis
) -> None:
    client = hook_app.test_client()
    requester = bearer(new_key(hook_app, "requester", "req"))
    hook = _register(client, requester, receiver.url, events=["aggregation.done"])
    receiver.script = [500]
    job = post_job(client, requester, items=6, golden=1, overlap=1, items_per_task=3)
    work_through(client, bearer(new_key(hook_app, "worker", "w")), job["id"])
    _work_queue(hook_app)

    assert [c.event["type"] for c in receiver.calls] == ["aggregation.done", "aggregation.done"]
    first, second = receiver.calls
    assert first.body == second.body  # the same event, the same id
    assert first.headers["X-Marketplace-Event-Id"] == second.headers["X-Marketplace-Event-Id"]
    assert [first.headers["X-Marketplace-Attempt"], second.headers["X-Marketplace-Attempt"]] == ["1", "2"]
    assert verify(hook["secret"], first.headers, first.body) and verify(hook["secret"], second.headers, second.body)
    (delivery,) = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=requester).get_json()
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 2)
    assert [a["status"] for a in delivery["log"]] == [500, 200]
    assert "answered 500" in delivery["log"][0]["error"]


def test_payout_runs_are_told_to_operators_hooks(hook_app: Flask, receiver: Receiver, redis: Redis) -> None:
    client = hook_app.test_client()
    operator = bearer(new_key(hook_app, "operator", "ops"))
    requester = bearer(new_key(hook_app, "requester", "req"))
    hook = _register(client, operator, receiver.url)
    _register(client, requester, receiver.url)  # requesters are not told of payout runs
    job = post_job(client, requester, items=6, golden=1, overlap=1, items_per_task=3)
    work_through(client, bearer(new_key(hook_app, "worker", "w")), job["id"])
    _work_queue(hook_app)  # the job's events: to the requester's hook
    receiver.calls.clear()
    run = client.post("/v1/payouts/runs", headers=operator).get_json()
    _work_queue(hook_app)
    assert receiver.types() == ["payout_run.done"]
    (call,) = receiver.calls
    assert verify(hook["secret"], call.headers, call.body)
    done = client.get(f"/v1/payouts/runs/{run['id']}", headers=operator).get_json()
    assert call.event["data"] == {
        "run_id": run["id"],
        "workers": done["workers"],
        "total_cents": done["total_cents"],
        "currency": "USD",
    }
    assert done["total_cents"] > 0


def test_deliveries_lost_with_redis_are_sent_by_the_sweep(hook_app: Flask, receiver: Receiver, redis: Redis) -> None:
    import workers.jobs

    client = hook_app.test_client()
    requester = bearer(new_key(hook_app, "requester", "req"))
    hook = _register(client, requester, receiver.url, events=["job.finished"])
    job = post_job(client, requester, items=6, golden=1, overlap=1, items_per_task=3)
    work_through(client, bearer(new_key(hook_app, "worker", "w")), job["id"])
    workers.jobs.aggregate_job(job["id"])  # records the event and queues its delivery ...
    redis.flushdb()  # ... which Redis loses
    _work_queue(hook_app)
    assert receiver.calls == []
    with session_scope(get_engine(hook_app)) as session:
        (delivery,) = session.execute(select(WebhookDelivery)).scalars()
        assert delivery.state == "pending"
        session.execute(  # time passes: it is overdue
            update(WebhookDelivery).values(next_attempt_at=utcnow() - webhooks.LOST_AFTER * 2)
        )
    workers.jobs.sweep()
    _work_queue(hook_app)
    assert receiver.types() == ["job.finished"]
    assert verify(hook["secret"], receiver.calls[0].headers, receiver.calls[0].body)
    with session_scope(get_engine(hook_app)) as session:
        assert session.execute(select(func.count()).select_from(WebhookDelivery)).scalar() == 1


def test_backoff_grows_between_attempts_until_the_delivery_fails(
    database_url: str, redis: Redis, receiver: Receiver, tmp_path: Path
) -> None:
    """With a real `marketplace worker` (RQ's scheduler sends the delayed retries): waits of 1
    and then 4 s, then the delivery is marked failed."""
    app = make_app(database_url, WEBHOOK_ALLOW_PRIVATE_ADDRESSES=True)
    try:
        client = app.test_client()
        requester = bearer(new_key(app, "requester", "req"))
        hook = _register(client, requester, receiver.url, events=["aggregation.done"])
        receiver.script = [500, 503, 502]
        job = post_job(client, requester, items=6, golden=1, overlap=1, items_per_task=3)
        work_through(client, bearer(new_key(app, "worker", "w")), job["id"])
        env = environment(
            database_url,
            tmp_path / "var",
            MARKETPLACE_WEBHOOK_ALLOW_PRIVATE_ADDRESSES="true",
            MARKETPLACE_WEBHOOK_RETRY_SECONDS="[1, 4]",
        )
        worker = RqWorker(env, tmp_path / "worker.log")
        worker.start()
        try:

            def finished() -> bool:
                deliveries = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=requester).get_json()
                return bool(deliveries) and deliveries[0]["state"] == "failed"

            wait_for(finished, 60, what="the delivery failed")
        finally:
            worker.stop()
        assert [c.event["type"] for c in receiver.calls] == ["aggregation.done"] * 3
        gaps = [b.at - a.at for a, b in zip(receiver.calls, receiver.calls[1:], strict=False)]
        # RQ's scheduler keeps due times in whole seconds and looks every second: a wait may end
        # up to 1 s early or late (a 1 s wait measured 0.35 s once), so 1 and 4 s stay apart.
        assert gaps[1] >= 2.9 and gaps[1] > gaps[0] + 0.9, gaps
        (delivery,) = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=requester).get_json()
        assert delivery["attempts"] == 3 and [a["status"] for a in delivery["log"]] == [500, 503, 502]
        assert delivery["next_attempt_at"] is None
    finally:
        dispose(app)


def test_an_account_keeps_a_bounded_number_of_hooks(database_url: str, redis: Redis) -> None:
    app = make_app(database_url, WEBHOOKS_PER_ACCOUNT=2)
    try:
        client = app.test_client()
        requester, other = (bearer(new_key(app, "requester", name)) for name in ("a", "b"))
        for n in range(2):
            _register(client, requester, f"https://example.com/{n}")
        refused = assert_error(
            client.post("/v1/webhooks", json={"url": "https://example.com/3"}, headers=requester), 409
        )
        assert "at most 2 webhooks" in refused["message"]
        _register(client, other, "https://example.com/other")  # per account
        assert count_rows(app, Webhook) == 3
    finally:
        dispose(app)
