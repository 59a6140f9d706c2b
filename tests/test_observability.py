"""Probes, request ids and the figures /metrics reads from the stores (in-process app)."""

from __future__ import annotations

import re

from flask import Flask
from redis import Redis

from marketplace.db import dispose
from tests.conftest import bearer, make_app, new_key, pg_database_url, post_job


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_readyz_is_503_naming_what_cannot_be_reached(database_url: str, redis: Redis) -> None:
    ready = make_app(database_url)
    assert ready.test_client().get("/readyz").status_code == 200
    dispose(ready)
    for broken, down in (
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "redis"),
        ({"DATABASE_URL": pg_database_url("mk_no_such_database")}, "database"),
    ):
        app = make_app(
            broken.get("DATABASE_URL", database_url), **{k: v for k, v in broken.items() if k != "DATABASE_URL"}
        )
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["checks"][down] == "down"
        assert app.test_client().get("/healthz").status_code == 200  # the process itself is up
        dispose(app)


def test_every_response_carries_a_request_id_the_hot_path_too(app: Flask) -> None:
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    worker = bearer(new_key(app, "worker"))
    job = post_job(client, requester, items=5, golden=1)
    lease = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)  # served by api/hot.py
    assert lease.status_code == 201
    assert re.fullmatch(r"[0-9a-f]{32}", lease.headers["X-Request-Id"])
    given = client.get("/v1/me", headers={**worker, "X-Request-Id": "from-the-proxy-1"})
    assert given.headers["X-Request-Id"] == "from-the-proxy-1"
    odd = client.get("/v1/me", headers={**worker, "X-Request-Id": "no spaces or\ttabs"})
    assert odd.headers["X-Request-Id"] != "no spaces or\ttabs"  # not echoed into logs and headers as given


def test_metrics_read_bans_aggregations_and_pool_from_the_database(app: Flask) -> None:
    client = app.test_client()
    operator = bearer(new_key(app, "operator"))
    requester = bearer(new_key(app, "requester"))
    worker = bearer(new_key(app, "worker"))
    job = post_job(client, requester, items=10, golden=2)
    before = client.get("/metrics").get_data(as_text=True)
    free = _metric(before, f'marketplace_pool_free_slots{{job_id="{job["id"]}"}}')
    assert free == 10 * 3
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).status_code == 201
    worker_id = client.get("/v1/me", headers=worker).get_json()["id"]
    assert client.post(f"/v1/workers/{worker_id}/ban", json={"reason": "spam"}, headers=operator).status_code == 200
    after = client.get("/metrics").get_data(as_text=True)
    assert _metric(after, 'marketplace_bans_total{kind="ban"}') == 1
    assert _metric(after, f'marketplace_pool_free_slots{{job_id="{job["id"]}"}}') == free  # revoked: back
    assert _metric(after, f'marketplace_open_leases{{job_id="{job["id"]}"}}') == 0
    assert _metric(after, "marketplace_aggregation_run_seconds_count") == 0
    assert _metric(after, "marketplace_store_database_up") == 1
    assert _metric(after, "marketplace_store_redis_up") == 1
