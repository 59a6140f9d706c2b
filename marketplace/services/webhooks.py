"""Webhooks: signed POSTs to a URL an account registered, when something it waits for happened.

Events, and whose hooks hear them:
- `job.finished`: a job of the requester has no work left and an aggregation has read every
  answer it kept (the results are final until the job changes); once per completion.
- `aggregation.done`: an aggregation run of one of the requester's jobs stored its results.
- `payout_run.done`: a payout run paid every worker: operators' hooks. A run pays workers for
  every requester's jobs at once and holds nothing of any one requester's, so requesters are
  not told (they paid when the tasks were accepted, which their jobs' spend shows).

How an event reaches a hook (a transactional outbox): events are read from the facts in the
database (`record_events`: aggregation runs, finished jobs, payout runs done) and become one
delivery row per subscribed hook, whose `UNIQUE (webhook_id, event_key)` makes an event found
twice one delivery. Event ids are derived from the fact (`aggregation-17`, `job-4-finished-981`,
`payout-run-3`), so every attempt of a delivery sends the same body with the same id and a
receiver dedupes by it. An RQ job posts each delivery (`attempt`); a failure (no answer, or
not 2xx) raises, and RQ's `Retry` tries again after exponentially growing waits
(`WEBHOOK_RETRY_SECONDS`) until the last attempt marks it failed. What RQ lost (Redis restarted,
a worker killed) the sweep finds again: facts of the last `WEBHOOK_CATCH_UP_SECONDS` without
their deliveries, and pending deliveries past their time.

Signing (the README has the receiver's recipe): `X-Marketplace-Signature: v1=<hex>` is
HMAC-SHA256 with the hook's secret over `<X-Marketplace-Timestamp>.<body>`, the timestamp in
Unix seconds at the attempt, so a receiver refuses replays older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, func, select, text
from sqlmodel import Session

from marketplace.auth import Principal
from marketplace.errors import Conflict, Invalid, NotFound
from marketplace.models import DeliveryState, Role, Webhook, WebhookDelivery, WebhookEvent, utcnow

EVENTS_BY_ROLE: dict[str, tuple[str, ...]] = {
    Role.REQUESTER: (WebhookEvent.JOB_FINISHED, WebhookEvent.AGGREGATION_DONE),
    Role.OPERATOR: (WebhookEvent.PAYOUT_RUN_DONE,),
}
SECRET_PREFIX = "whsec_"
USER_AGENT = "crowd-marketplace-webhooks/1"
# A pending delivery this long past its time, and not in flight, was lost by RQ: the sweep
# enqueues it again (RQ's scheduler sends a retry within a second or two of its time).
LOST_AFTER = timedelta(seconds=15)
MAX_ERROR = 300


@dataclass(frozen=True)
class Policy:
    """The operator's settings (config `WEBHOOK_*`)."""

    retry_seconds: tuple[int, ...] = (15, 60, 240, 960, 3840, 15360)
    timeout_seconds: float = 10.0
    allow_private_addresses: bool = False
    catch_up_seconds: int = 3600
    hooks_per_account: int = 20

    @classmethod
    def from_config(cls, config: Any) -> Policy:
        return cls(
            retry_seconds=tuple(int(s) for s in config["WEBHOOK_RETRY_SECONDS"]),
            timeout_seconds=float(config["WEBHOOK_TIMEOUT_SECONDS"]),
            allow_private_addresses=bool(config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"]),
            catch_up_seconds=int(config["WEBHOOK_CATCH_UP_SECONDS"]),
            hooks_per_account=int(config["WEBHOOKS_PER_ACCOUNT"]),
        )

    @property
    def max_attempts(self) -> int:
        return len(self.retry_seconds) + 1


# --- hooks ----------------------------------------------------------------------------------


def register(
    session: Session, principal: Principal, url: str, events: list[str] | None, description: str, policy: Policy
) -> tuple[Webhook, str]:
    """A new hook of the caller's and its secret (shown once)."""
    allowed = EVENTS_BY_ROLE.get(principal.role, ())
    wanted = list(dict.fromkeys(events)) if events else list(allowed)
    refused = [event for event in wanted if event not in allowed]
    if refused:
        names = ", ".join(allowed)
        raise Invalid("events", f"{', '.join(refused)}: not for a {principal.role} (yours: {names})")
    check_url(url, policy.allow_private_addresses)
    count = session.execute(select(func.count()).where(Webhook.account_id == principal.id)).scalar_one()
    if count >= policy.hooks_per_account:
        raise Conflict(f"at most {policy.hooks_per_account} webhooks per account; delete one first")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    hook = Webhook(account_id=principal.id, url=url, secret=secret, events=wanted, description=description)
    session.add(hook)
    session.flush()
    return hook, secret


def check_url(url: str, allow_private: bool) -> None:
    """http(s), a host, no user or password (they would be sent and stored); with private
    addresses not allowed, no loopback, private, link-local or reserved address written as such
    (names are resolved, and checked, at each delivery)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Invalid("url", "must start with http:// or https://")
    if not parts.hostname:
        raise Invalid("url", "must name a host")
    if parts.username or parts.password:
        raise Invalid("url", "must not carry a user or password (the signature authenticates us)")
    if parts.fragment:
        raise Invalid("url", "must not have a #fragment")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        raise Invalid("url", "has a bad port") from error
    if not allow_private and (parts.hostname == "localhost" or _private_literal(parts.hostname)):
        raise Invalid("url", "must not point at a loopback, private or reserved address")


def _private_literal(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return _private(address)


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not address.is_global or address.is_multicast


def own_hook(session: Session, principal: Principal, hook_id: int) -> Webhook:
    """The caller's hook; another account's answers exactly as a missing one does."""
    hook = session.get(Webhook, hook_id)
    if hook is None or hook.account_id != principal.id:
        raise NotFound(f"webhook {hook_id} not found")
    return hook


def hooks_of(session: Session, principal: Principal) -> list[Webhook]:
    return list(
        session.execute(select(Webhook).where(Webhook.account_id == principal.id).order_by(Webhook.id)).scalars()
    )


def delete(session: Session, principal: Principal, hook_id: int) -> None:
    """Delete the caller's hook and its deliveries (pending ones are not sent)."""
    hook = own_hook(session, principal, hook_id)
    session.execute(text("DELETE FROM webhookdelivery WHERE webhook_id = :hook"), {"hook": hook.id})
    session.delete(hook)


def deliveries_of(
    session: Session, principal: Principal, hook_id: int, limit: int, before: int | None
) -> list[WebhookDelivery]:
    """The hook's deliveries, newest first (`before`: ids below it, the next page)."""
    hook = own_hook(session, principal, hook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(session.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit)).scalars())


# --- events ---------------------------------------------------------------------------------

# Each query finds the facts of its kind since `since`, for every hook subscribed to them that
# existed at the time and has no delivery of that event yet; `event_id` is made here only.
_AGGREGATIONS = """
SELECT h.id AS hook_id, 'aggregation-' || r.id AS event_id, r.created_at AS at,
       r.id AS run_id, r.job_id, r.method, r.version, r.items, r.answers_used, r.last_answer_id
FROM aggregationrun r
JOIN job j ON j.id = r.job_id
JOIN webhook h ON h.account_id = j.requester_id AND 'aggregation.done' = ANY(h.events)
WHERE r.created_at >= :since AND r.created_at >= h.created_at
  AND (CAST(:job AS BIGINT) IS NULL OR r.job_id = :job)
  AND NOT EXISTS (SELECT 1 FROM webhookdelivery d WHERE d.webhook_id = h.id AND d.event_key = 'aggregation-' || r.id)
ORDER BY r.id, h.id
"""
_FINISHED = """
SELECT h.id AS hook_id, 'job-' || j.id || '-finished-' || r.last_answer_id AS event_id,
       greatest(r.created_at, j.updated_at) AS at, j.id AS job_id, r.id AS run_id, r.method, r.items,
       r.answers_used
FROM job j
JOIN webhook h ON h.account_id = j.requester_id AND 'job.finished' = ANY(h.events)
JOIN LATERAL (SELECT * FROM aggregationrun x WHERE x.job_id = j.id ORDER BY x.id DESC LIMIT 1) r ON true
WHERE j.state = 'completed'
  AND greatest(r.created_at, j.updated_at) >= :since AND greatest(r.created_at, j.updated_at) >= h.created_at
  AND (CAST(:job AS BIGINT) IS NULL OR j.id = :job)
  AND NOT EXISTS (SELECT 1 FROM answer a WHERE a.job_id = j.id AND a.id > r.last_answer_id AND NOT a.excluded)
  AND NOT EXISTS (SELECT 1 FROM webhookdelivery d
                  WHERE d.webhook_id = h.id AND d.event_key = 'job-' || j.id || '-finished-' || r.last_answer_id)
ORDER BY j.id, h.id
"""
_PAYOUTS = """
SELECT h.id AS hook_id, 'payout-run-' || p.id AS event_id, p.finished_at AS at,
       p.id AS run_id, p.workers, p.total_cents, p.currency
FROM payoutrun p
JOIN webhook h ON 'payout_run.done' = ANY(h.events)
JOIN account a ON a.id = h.account_id AND a.role = 'operator'
WHERE p.state = 'done' AND p.finished_at >= :since AND p.finished_at >= h.created_at
  AND (CAST(:run AS BIGINT) IS NULL OR p.id = :run)
  AND NOT EXISTS (SELECT 1 FROM webhookdelivery d WHERE d.webhook_id = h.id AND d.event_key = 'payout-run-' || p.id)
ORDER BY p.id, h.id
"""


def record_events(
    session: Session, now: datetime, policy: Policy, job_id: int | None = None, payout_run_id: int | None = None
) -> list[int]:
    """Deliveries for the events of the last `catch_up_seconds` that subscribed hooks do not
    have yet (all of them, or one job's, or one payout run's); the new deliveries' ids. The
    caller commits, then enqueues them."""
    since = now - timedelta(seconds=policy.catch_up_seconds)
    found: list[tuple[int, str, str, dict[str, Any]]] = []
    if payout_run_id is None:
        window: dict[str, Any] = {"since": since, "job": job_id}
        for row in session.execute(text(_AGGREGATIONS), window).mappings():
            data = {k: row[k] for k in ("job_id", "run_id", "method", "version", "items", "answers_used")}
            found.append((row["hook_id"], row["event_id"], WebhookEvent.AGGREGATION_DONE, _event(row, data)))
        for row in session.execute(text(_FINISHED), window).mappings():
            data = {
                "job_id": row["job_id"],
                "state": "completed",
                "items": row["items"],
                "answers_used": row["answers_used"],
                "aggregation": {"run_id": row["run_id"], "method": row["method"]},
                "results": f"/v1/jobs/{row['job_id']}/results",
            }
            found.append((row["hook_id"], row["event_id"], WebhookEvent.JOB_FINISHED, _event(row, data)))
    if job_id is None:
        for row in session.execute(text(_PAYOUTS), {"since": since, "run": payout_run_id}).mappings():
            data = {k: row[k] for k in ("run_id", "workers", "total_cents", "currency")}
            found.append((row["hook_id"], row["event_id"], WebhookEvent.PAYOUT_RUN_DONE, _event(row, data)))
    created = []
    for hook_id, event_id, kind, envelope in found:
        body = json.dumps({"id": event_id, "type": str(kind), **envelope}, separators=(",", ":"))
        values = {"hook": hook_id, "event": event_id, "type": str(kind), "body": body, "now": now}
        new_id = session.execute(text(_NEW_DELIVERY), values).scalar()
        if new_id is not None:
            created.append(int(new_id))
    return created


_NEW_DELIVERY = """
INSERT INTO webhookdelivery (webhook_id, event_key, event_type, body, state, attempts, next_attempt_at, log, created_at)
VALUES (:hook, :event, :type, :body, 'pending', 0, :now, '[]', :now)
ON CONFLICT ON CONSTRAINT uq_delivery_hook_event DO NOTHING
RETURNING id
"""


def _event(row: Any, data: dict[str, Any]) -> dict[str, Any]:
    return {"created_at": row["at"].isoformat(), "data": data}


def lost_deliveries(session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Pending deliveries past their time and not in flight: RQ lost them (the sweep's share)."""
    rows = session.execute(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.state == DeliveryState.PENDING,
            WebhookDelivery.next_attempt_at < now - LOST_AFTER,
            (WebhookDelivery.claimed_until.is_(None)) | (WebhookDelivery.claimed_until < now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return [int(i) for i in rows.scalars()]


# --- delivering -------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` + HMAC-SHA256(secret, "<timestamp>.<body>") in hex."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


@dataclass(frozen=True)
class Outcome:
    """What an attempt did: `retry` asks for another attempt later (the caller raises, so RQ's
    `Retry` schedules it)."""

    delivery_id: int
    state: str
    attempts: int
    status: int | None = None
    error: str | None = None
    retry: bool = False
    skipped: bool = False  # delivered or failed already, in flight elsewhere, or its hook gone


def attempt(engine: Engine, delivery_id: int, policy: Policy) -> Outcome:
    """Claim the delivery (one attempt in flight at a time), POST it, record what happened."""
    now = utcnow()
    claim = text(
        "UPDATE webhookdelivery d SET claimed_until = :until, attempts = d.attempts + 1"
        " FROM webhook h WHERE d.id = :id AND h.id = d.webhook_id AND d.state = 'pending'"
        " AND (d.claimed_until IS NULL OR d.claimed_until < :now)"
        " RETURNING d.event_key, d.event_type, d.body, d.attempts, h.url, h.secret"
    )
    until = now + timedelta(seconds=policy.timeout_seconds + 30)
    with Session(engine) as session:
        row = session.execute(claim, {"id": delivery_id, "until": until, "now": now}).mappings().first()
        session.commit()
    if row is None:
        return Outcome(delivery_id, "", 0, skipped=True)
    return _record(engine, delivery_id, int(row["attempts"]), _post(row, policy), policy)


@dataclass(frozen=True)
class Sent:
    """One POST: the receiver's status (None: no answer), why it failed, how long it took."""

    status: int | None
    error: str | None
    seconds: float


def _post(row: Any, policy: Policy) -> Sent:
    body = row["body"].encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Marketplace-Event-Id": row["event_key"],
        "X-Marketplace-Event-Type": row["event_type"],
        "X-Marketplace-Attempt": str(row["attempts"]),
        "X-Marketplace-Timestamp": str(timestamp),
        "X-Marketplace-Signature": sign(row["secret"], timestamp, body),
    }
    started = time.perf_counter()
    refused = None if policy.allow_private_addresses else _refused_address(row["url"])
    if refused is not None:
        return Sent(None, refused, 0.0)
    try:
        response = httpx.post(
            row["url"], content=body, headers=headers, timeout=policy.timeout_seconds, follow_redirects=False
        )
    except httpx.HTTPError as error:
        return Sent(None, f"{type(error).__name__}: {error}"[:MAX_ERROR], time.perf_counter() - started)
    return Sent(response.status_code, None, time.perf_counter() - started)


def _refused_address(url: str) -> str | None:
    """Why the URL's host may not be called (it resolves to a private address), or None."""
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as error:
        return f"cannot resolve the host: {error}"[:MAX_ERROR]
    for info in infos:
        if _private(ipaddress.ip_address(info[4][0])):
            return "the host resolves to a loopback, private or reserved address"
    return None


def _record(engine: Engine, delivery_id: int, attempts: int, sent: Sent, policy: Policy) -> Outcome:
    status, error = sent.status, sent.error
    ok = status is not None and 200 <= status < 300
    if error is None and not ok:
        error = f"the receiver answered {status}"
    now = utcnow()
    if ok:
        state, next_at = DeliveryState.DELIVERED, None
    elif attempts >= policy.max_attempts:
        state, next_at = DeliveryState.FAILED, None
    else:
        state, next_at = DeliveryState.PENDING, now + timedelta(seconds=policy.retry_seconds[attempts - 1])
    with Session(engine, expire_on_commit=False) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:  # its hook was deleted meanwhile
            return Outcome(delivery_id, "", attempts, status, error, skipped=True)
        ms = round(sent.seconds * 1000)
        entry = {"at": now.isoformat(), "attempt": attempts, "status": status, "error": error, "ms": ms}
        delivery.log = [*delivery.log, entry]
        delivery.state, delivery.last_status, delivery.last_error = state, status, error
        delivery.next_attempt_at, delivery.claimed_until = next_at, None
        delivery.finished_at = now if state != DeliveryState.PENDING else None
        session.add(delivery)
        session.commit()
    return Outcome(delivery_id, state, attempts, status, error, retry=state == DeliveryState.PENDING)
