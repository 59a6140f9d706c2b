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
