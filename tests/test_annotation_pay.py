"""Per-object pricing pays for the objects each answer holds (boxes here), up to the cap."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from marketplace.db import get_engine, session_scope
from marketplace.services import acceptance
from marketplace.services.aggregating import aggregate_job
from tests.annotation_jobs import annotation_job, lease, submit
from tests.conftest import bearer, new_key

Headers = dict[str, str]


def boxes(n: int) -> list[dict[str, object]]:
    return [{"label": "car", "bbox": [10 + 30 * k, 10, 20, 20]} for k in range(n)]


def test_a_box_task_is_paid_per_box_up_to_the_cap(app: Flask, client: FlaskClient, requester: Headers) -> None:
    job = annotation_job(
        client,
        requester,
        items=3,
        golden=0,
        overlap=1,
        items_per_task=3,
        golden_ratio=0.0,
        pricing={"model": "per_object", "cents_per_object": 2, "max_objects": 5},
        acceptance={"auto_accept_seconds": 3600},
    )
    worker = bearer(new_key(app, "worker"))
    task = lease(client, worker, job["id"])
    drawn = [3, 0, 7]  # 7 boxes pay for 5 (the cap); nothing to draw pays nothing
    answers = [{"item_id": item["id"], "objects": boxes(n)} for item, n in zip(task["items"], drawn, strict=True)]
    assert submit(client, worker, task, answers).status_code == 200
    with session_scope(get_engine(app)) as session:
        aggregate_job(session, job["id"])
    with session_scope(get_engine(app)) as session:
        assert acceptance.decide_job(session, job["id"], acceptance.Limits())["accepted"] == 1
    decided = client.get(f"/v1/assignments/{task['id']}", headers=worker).get_json()
    assert (decided["decision"], decided["paid_cents"]) == ("accepted", 2 * (3 + 0 + 5))
    assert client.get("/v1/me", headers=worker).get_json()["balance_cents"] == 16
    assert client.get(f"/v1/jobs/{job['id']}/spend", headers=requester).get_json()["work_cents"] == 16
