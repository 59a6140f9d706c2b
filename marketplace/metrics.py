"""Prometheus metrics: every counter of the app in one place, a small function per event, and
`GET /metrics`.

Two kinds of figures:
- counted by the process that sees the event (requests and their latency, leases, 204s,
  submits, answers, refusals for rate limits). Under gunicorn these
  go through `prometheus_client`'s multiprocess mode: `PROMETHEUS_MULTIPROC_DIR` names a
  folder every process of one host writes to (`marketplace serve` sets one), and any process
  answers `/metrics` with the sum.
- read from the stores at scrape time, because the truth is there and some of it happens in RQ
  work horses that live for one job: bans, aggregation runs and their seconds, payout runs and
  their amounts, webhook deliveries and attempts, queue depths, free slots and open leases per
  running job. These are the same from every API process: when Prometheus scrapes each pod,
  aggregate them with `max`, not `sum` (deploy/README.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from marketplace import queue
from marketplace.db import get_engine

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("marketplace_http_requests", "HTTP requests by route and status", ["method", "route", "status"])
LATENCY = Histogram(
    "marketplace_http_request_seconds",
    "time to the response's first byte",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
LEASES = Counter("marketplace_leases", "tasks leased (201 on POST /v1/assignments)")
EMPTY_LEASES = Counter("marketplace_leases_empty", "lease requests that found no work (204)")
SUBMITS = Counter("marketplace_submits", "submits answered 200 (a retry replayed by its Idempotency-Key included)")
ANSWERS = Counter("marketplace_answers", "answers in the submits answered 200")
RATE_LIMITED = Counter("marketplace_rate_limited", "requests refused with 429", ["limit"])


def request_done(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def lease_answered(status: int) -> None:
    if status == 201:
        LEASES.inc()
    elif status == 204:
        EMPTY_LEASES.inc()


def submit_answered(answers: int) -> None:
    SUBMITS.inc()
    ANSWERS.inc(answers)


def rate_limited(limit: str) -> None:
    RATE_LIMITED.labels(limit).inc()


class StoreCollector(Collector):
    """Figures read from PostgreSQL and Redis when scraped (see the module's docstring)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._database()
        yield from self._queues()

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("marketplace_store_database_up", "the scrape could read the database")
        try:
            with get_engine(self.app).connect() as connection:
                connection.execute(text("SET LOCAL statement_timeout = '2s'"))
                rows = {name: connection.execute(text(sql)).all() for name, sql in _STORE_QUERIES.items()}
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        bans = CounterMetricFamily("marketplace_bans", "bans and blocks, from the audit log", labels=["kind"])
        for kind, count in rows["bans"]:
            bans.add_metric([kind], count)
        yield bans
        ((count, seconds),) = rows["aggregations"]
        yield SummaryMetricFamily(
            "marketplace_aggregation_run_seconds",
            "aggregation runs and their seconds",
            count_value=count,
            sum_value=seconds,
        )
        ((runs, workers, cents),) = rows["payouts"]
        yield CounterMetricFamily("marketplace_payout_runs", "payout runs done", value=runs)
        yield CounterMetricFamily("marketplace_payout_lines", "workers paid, summed over runs done", value=workers)
        yield CounterMetricFamily("marketplace_payout_cents", "amounts paid out, in minor units", value=cents)
        free = GaugeMetricFamily(
            "marketplace_pool_free_slots", "answers still wanted, per running job", labels=["job_id"]
        )
        leased = GaugeMetricFamily(
            "marketplace_open_leases", "tasks leased and not back, per running job", labels=["job_id"]
        )
        for job_id, free_slots, open_leases in rows["pool"]:
            free.add_metric([str(job_id)], free_slots)
            leased.add_metric([str(job_id)], open_leases)
        yield free
        yield leased
        deliveries = GaugeMetricFamily(
            "marketplace_webhook_deliveries", "webhook deliveries by state", labels=["state"]
        )
        for state, count in rows["webhooks"]:
            deliveries.add_metric([state], count)
        yield deliveries
        ((attempts,),) = rows["webhook_attempts"]
        yield CounterMetricFamily("marketplace_webhook_attempts", "webhook delivery attempts", value=attempts)

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("marketplace_queue_jobs", "RQ jobs by state", labels=["queue", "state"])
        name = self.app.config["QUEUE_NAME"]
        try:
            redis = queue.get_redis(self.app)
            rq_queue = queue.get_queue(redis, name)
            figures = {
                "queued": rq_queue.count,
                "started": StartedJobRegistry(queue=rq_queue).count,
                "scheduled": ScheduledJobRegistry(queue=rq_queue).count,
                "failed": FailedJobRegistry(queue=rq_queue).count,
            }
        except RedisError:
            yield GaugeMetricFamily("marketplace_store_redis_up", "the scrape could read Redis", value=0)
            return
        yield GaugeMetricFamily("marketplace_store_redis_up", "the scrape could read Redis", value=1)
        for state, count in figures.items():
            depth.add_metric([name, state], count)
        yield depth


_STORE_QUERIES = {
    "bans": "SELECT action, count(*) FROM auditevent"
    " WHERE action IN ('ban', 'ban_job', 'ban_requester', 'cooldown') GROUP BY action ORDER BY action",
    "aggregations": "SELECT count(*), coalesce(sum(seconds), 0) FROM aggregationrun",
    "payouts": "SELECT count(*), coalesce(sum(workers), 0), coalesce(sum(total_cents), 0)"
    " FROM payoutrun WHERE state = 'done'",
    "webhooks": "SELECT state, count(*) FROM webhookdelivery GROUP BY state ORDER BY state",
    "webhook_attempts": "SELECT coalesce(sum(attempts), 0) FROM webhookdelivery",
    "pool": "SELECT j.id,"
    " (SELECT count(*) FROM slot s WHERE s.job_id = j.id),"
    " (SELECT count(*) FROM assignment a WHERE a.job_id = j.id AND a.state = 'leased')"
    " FROM job j WHERE j.state = 'running' ORDER BY j.id",
}


def registry(app: Flask) -> CollectorRegistry:
    """What `/metrics` shows: this process's counters, or every process's in multiprocess mode,
    and the stores' figures."""
    scrape = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(scrape)
    else:
        scrape.register(_Forward(REGISTRY))
    scrape.register(StoreCollector(app))
    return scrape


class _Forward(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        return iter(self.source.collect())


def init_app(app: Flask) -> None:
    @app.get("/metrics")
    def metrics() -> Any:
        """Prometheus text format; keep it off the internet (the nginx examples refuse it)."""
        return Response(generate_latest(registry(app)), mimetype=CONTENT_TYPE_LATEST)
