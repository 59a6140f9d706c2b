"""PostgreSQL's one-statement lease: one worker's concurrent leases still serialise.

The lease statement locks the worker's row, but its snapshot predates the lock: a lease that
waited for another lease of the same worker may pick an item that one took, which the unique
(job, worker, item) of the task entries refuses, and the lease runs again. Clients never see it.
"""

from __future__ import annotations

import threading
from collections import Counter

from flask import Flask
from sqlalchemy import select

from marketplace.db import get_engine, session_scope
from marketplace.models import AssignmentItem
from tests.conftest import bearer, new_key, post_job


def test_one_workers_concurrent_leases_never_fail_or_repeat_an_item(pg_app: Flask) -> None:
    client = pg_app.test_client()
    requester = bearer(new_key(pg_app, "requester"))
    job = post_job(client, requester, items=60, golden=6, overlap=3, items_per_task=3, golden_ratio=0.34)
    worker = bearer(new_key(pg_app, "worker", "racer"))
    statuses: list[int] = []
    lock = threading.Lock()

    def lease() -> None:
        test_client = pg_app.test_client()
        for _ in range(6):
            response = test_client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)
            with lock:
                statuses.append(response.status_code)

    threads = [threading.Thread(target=lease) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(statuses) <= {201, 204}, Counter(statuses)
    with session_scope(get_engine(pg_app)) as session:
        seen = session.execute(select(AssignmentItem.item_id).where(AssignmentItem.job_id == job["id"])).scalars().all()
    assert len(seen) == len(set(seen)), "the worker got an item twice"
    assert statuses.count(201) * 3 == len(seen)


def test_a_banned_worker_is_refused_and_an_unknown_job_is_404(pg_app: Flask) -> None:
    client = pg_app.test_client()
    requester = bearer(new_key(pg_app, "requester"))
    operator = bearer(new_key(pg_app, "operator"))
    job = post_job(client, requester, items=10, golden=2)
    worker_key = new_key(pg_app, "worker", "w")
    worker = bearer(worker_key)
    assert client.post("/v1/assignments", json={"job_id": job["id"] + 1000}, headers=worker).status_code == 404
    me = client.get("/v1/me", headers=worker).get_json()
    banned = client.post(f"/v1/workers/{me['id']}/ban", json={"reason": "test"}, headers=operator)
    assert banned.status_code in (200, 201), banned.get_json()
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).status_code == 403
    assert client.post("/v1/assignments", json={}, headers=worker).status_code == 403
