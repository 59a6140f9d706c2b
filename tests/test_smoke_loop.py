"""The loop end to end on both databases: post, lease until there is nothing, submit, count."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from marketplace.db import get_engine, session_scope
from marketplace.models import Answer
from tests.conftest import bearer, new_key, post_job


def test_crowd_fills_every_item_exactly_to_its_overlap(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(client, requester, items=12, golden=3, overlap=3, items_per_task=4)
    workers = [bearer(new_key(app, "worker", f"w{i}")) for i in range(5)]
    seen: dict[int, set[str]] = {i: set() for i in range(5)}
    active = set(range(5))
    while active:
        for i in sorted(active):
            lease = client.post("/v1/assignments", json={}, headers=workers[i])
            if lease.status_code == 204:
                active.discard(i)
                continue
            assert lease.status_code == 201, lease.get_json()
            task = lease.get_json()
            urls = {item["data"]["url"] for item in task["items"]}
            assert not urls & seen[i], "a worker got an item twice"
            seen[i] |= urls
            answers = [{"item_id": item["id"], "label": "cat"} for item in task["items"]]
            done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=workers[i])
            assert done.status_code == 200, done.get_json()
    with session_scope(get_engine(app)) as session:
        per_item = dict(
            session.execute(
                select(Answer.item_id, func.count())
                .where(Answer.job_id == job["id"], Answer.is_golden.is_(False))
                .group_by(Answer.item_id)
            )
            .tuples()
            .all()
        )
    assert len(per_item) == 12
    assert set(per_item.values()) == {3}
    state = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()
    assert state["state"] == "completed"
    assert state["progress"]["answers"] == 36
    assert state["progress"]["answers_free"] == 0
