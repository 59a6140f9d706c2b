"""Golden items look exactly like real ones to workers (invariant 3): not by a decision's reason,
nor by the work a submit causes (its timing)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from redis import Redis

from marketplace import queue
from marketplace.db import dispose
from tests.conftest import bearer, make_app, new_key, post_job

Headers = dict[str, str]


@pytest.fixture
def quiet_app(database_url: str, redis: Redis) -> Iterator[Flask]:
    """No aggregation batches by answer count: only the work every submit causes is left."""
    application = make_app(database_url, AGGREGATE_EVERY_ANSWERS=10**9)
    yield application
    dispose(application)


def _redis_commands_of_a_submit(app: Flask, worker: Headers, job_id: int) -> list[str]:
    client = app.test_client()
    task = client.post("/v1/assignments", json={"job_id": job_id}, headers=worker).get_json()
    answers = {"answers": [{"item_id": i["id"], "label": "cat"} for i in task["items"]]}
    connection = queue.get_redis(app)
    connection.flushdb()  # no job waiting: each submit starts from the same Redis
    seen: list[str] = []
    original = connection.execute_command

    def recording(*args: Any, **options: Any) -> Any:
        seen.append(str(args[0]))
        return original(*args, **options)

    connection.execute_command = recording  # type: ignore[method-assign]
    try:
        done = client.post(f"/v1/assignments/{task['id']}/submit", json=answers, headers=worker)
    finally:
        connection.execute_command = original  # type: ignore[method-assign]
    assert done.status_code == 200, done.get_json()
    return seen


def test_a_submit_holding_a_golden_item_does_the_same_work_as_one_without(quiet_app: Flask) -> None:
    """The audit timed submits of tasks with a golden item 0.57 ms slower (median): only they
    queued a Redis job. Every submit now makes the same Redis calls."""
    client = quiet_app.test_client()
    requester = bearer(new_key(quiet_app, "requester"))
    plain = post_job(client, requester, items=10, golden=2, golden_ratio=0.0, items_per_task=2)
    mixed = post_job(client, requester, items=10, golden=6, golden_ratio=0.5, items_per_task=2)  # 1 golden a task
    worker = bearer(new_key(quiet_app, "worker"))
    _redis_commands_of_a_submit(quiet_app, worker, plain["id"])  # warm: RQ asks the server's version once
    without = _redis_commands_of_a_submit(quiet_app, worker, plain["id"])
    holding = _redis_commands_of_a_submit(quiet_app, worker, mixed["id"])
    assert without == holding
    assert without  # the rules check is queued after every submit


def test_a_coalition_of_five_cannot_tell_golden_items_by_how_often_they_come_back(
    app: Flask, requester: Headers
) -> None:
    """The audit's 30-worker run showed every golden item to 13-29 workers and every real item to
    at most 4: five colluding accounts could pool what they saw and pick out the items seen by
    more of them than any real item can be. A golden item is now shown at most `golden_max_views`
    times (default twice the overlap), and the job warns that its golden set is too small."""
    client = app.test_client()
    job = post_job(client, requester, items=150, golden=10, overlap=3, golden_ratio=0.4, items_per_task=5)
    supply = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["progress"]["golden_supply"]
    assert (supply["max_views"], supply["capacity"]) == (6, 60) and supply["warning"]
    crowd = [bearer(new_key(app, "worker", f"w{n}")) for n in range(30)]
    seen: dict[int, list[str]] = {n: [] for n in range(len(crowd))}
    busy = True
    while busy:  # every worker in turn, a task at a time, until none gets work
        busy = False
        for n, worker in enumerate(crowd):
            lease = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)
            if lease.status_code != 201:
                continue
            busy, task = True, lease.get_json()
            seen[n] += [item["data"]["url"] for item in task["items"]]
            answers = {"answers": [{"item_id": i["id"], "label": "cat"} for i in task["items"]]}
            assert client.post(f"/v1/assignments/{task['id']}/submit", json=answers, headers=worker).status_code == 200
    viewers: dict[str, int] = {}
    for urls in seen.values():
        for url in urls:
            viewers[url] = viewers.get(url, 0) + 1
    golden = {url for url in viewers if url.startswith("img-g")}
    assert max(viewers[url] for url in golden) <= 6 and max(v for u, v in viewers.items() if u not in golden) <= 3
    coalition: dict[str, int] = {}
    for n in range(5):
        for url in seen[n]:
            coalition[url] = coalition.get(url, 0) + 1
    identified = {url for url, count in coalition.items() if count > 3}  # more than any real item can be seen
    assert identified <= golden  # the attack is sound: only golden items are ever seen that often
    assert len(identified) / 10 <= 0.2, f"a coalition of 5 identified {len(identified)} of 10 golden items"


def test_a_workers_own_quality_figure_does_not_move_per_task(app: Flask, requester: Headers) -> None:
    """Per-job golden counts in /v1/me, updated after each aggregation, let a worker tell which of
    its tasks held golden items (the count moved right after one). A worker sees one figure over
    every job, from the checks of whole days that ended a day ago, once there are 20 of them."""
    from datetime import timedelta

    from sqlalchemy import update

    from marketplace.db import get_engine, session_scope
    from marketplace.models import Answer, utcnow
    from marketplace.services.aggregating import aggregate_job
    from tests.conftest import work_through

    client = app.test_client()
    job = post_job(client, requester, items=30, golden=30, overlap=1, golden_ratio=0.5, items_per_task=4)
    worker = bearer(new_key(app, "worker"))
    assert work_through(client, worker, job["id"], "cat", limit=6) == 6  # 12 golden answers, all right
    with session_scope(get_engine(app)) as session:
        aggregate_job(session, job["id"])
    me = client.get("/v1/me", headers=worker).get_json()
    assert me["quality"] == [{"job_id": job["id"], "answers": 24, "agreement": me["quality"][0]["agreement"]}]
    assert (me["checks"]["accuracy"], me["checks"]["checked"]) == (None, None)  # today's do not count yet
    with session_scope(get_engine(app)) as session:  # as if they were given two days ago
        session.execute(update(Answer).values(created_at=utcnow() - timedelta(days=2)))
    assert client.get("/v1/me", headers=worker).get_json()["checks"]["accuracy"] is None  # 12 < 20
    assert work_through(client, worker, job["id"], "cat", limit=6) == 6
    with session_scope(get_engine(app)) as session:
        session.execute(update(Answer).values(created_at=utcnow() - timedelta(days=2)))
    settled = client.get("/v1/me", headers=worker).get_json()["checks"]
    assert (settled["accuracy"], settled["checked"]) == (1.0, 24)  # the raw share: all right is 1.0
    assert work_through(client, worker, job["id"], "dog", limit=2) >= 1  # wrong today: tomorrow's figure
    assert client.get("/v1/me", headers=worker).get_json()["checks"] == settled
