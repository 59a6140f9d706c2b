"""The pool finishes items before it starts new ones: an item's answers arrive close together
(its results and the model's view of each worker come early), while who answers which item is
still mixed (each lease takes a random half of the first unseen items, so workers who lease one
after another do not answer the same items every time)."""

from __future__ import annotations

import itertools

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from marketplace.db import get_engine, session_scope
from marketplace.models import Answer
from tests.conftest import bearer, new_key, post_job

Headers = dict[str, str]


def _lease_and_answer(client: FlaskClient, headers: Headers, job_id: int) -> set[str]:
    """Lease a task, answer it; the items it held (by their data: a task's ids are its own)."""
    lease = client.post("/v1/assignments", json={"job_id": job_id}, headers=headers)
    assert lease.status_code == 201, lease.get_json()
    task = lease.get_json()
    answers = [{"item_id": i["id"], "label": "cat"} for i in task["items"]]
    done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers)
    assert done.status_code == 200, done.get_json()
    return {i["data"]["url"] for i in task["items"]}


def test_three_leases_in_a_row_share_their_items(app: Flask, client: FlaskClient, requester: Headers) -> None:
    """Overlap 3, five items a task: three workers one after another answer at most twelve
    distinct items (each takes five of the first ten or so it has not seen), where a
    round-by-round pool gave them fifteen."""
    job = post_job(client, requester, items=60, golden=0, overlap=3, golden_ratio=0.0, items_per_task=5)
    workers = [bearer(new_key(app, "worker", f"w{n}")) for n in range(3)]
    touched = [_lease_and_answer(client, headers, job["id"]) for headers in workers]
    assert len(set().union(*touched)) <= 12
    assert all(len(items) == 5 for items in touched)


def test_workers_in_a_fixed_order_do_not_form_fixed_groups(app: Flask, client: FlaskClient, requester: Headers) -> None:
    """Six workers lease in the same order for six rounds: the items they finish are answered by
    many different trios, not by the two trios of neighbours a strict item-by-item queue makes."""
    job = post_job(client, requester, items=60, golden=0, overlap=3, golden_ratio=0.0, items_per_task=5)
    workers = [bearer(new_key(app, "worker", f"w{n}")) for n in range(6)]
    for _round, headers in itertools.product(range(6), workers):
        _lease_and_answer(client, headers, job["id"])
    with session_scope(get_engine(app)) as session:
        rows = session.execute(select(Answer.item_id, Answer.worker_id).where(Answer.job_id == job["id"])).all()
    by_item: dict[int, set[int]] = {}
    for item_id, worker_id in rows:
        by_item.setdefault(item_id, set()).add(worker_id)
    trios = {frozenset(w) for w in by_item.values() if len(w) == 3}
    assert len(by_item) == 60 and len(trios) >= 6, trios
