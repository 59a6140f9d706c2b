"""Dynamic overlap: the minimum for every item, more workers only while the aggregate is unsure."""

from __future__ import annotations

from collections import Counter

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from marketplace.db import get_engine, session_scope
from marketplace.models import Answer
from marketplace.services.aggregating import aggregate_job
from tests.conftest import bearer, new_key, post_job


def _one_task(client: FlaskClient, headers: dict[str, str], job_id: int, label_for: dict[str, str]) -> bool:
    lease = client.post("/v1/assignments", json={"job_id": job_id}, headers=headers)
    if lease.status_code == 204:
        return False
    task = lease.get_json()
    answers = [{"item_id": i["id"], "label": label_for[i["data"]["url"]]} for i in task["items"]]
    assert (
        client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers).status_code
        == 200
    )
    return True


def test_unsure_items_get_more_workers_up_to_the_maximum(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job = post_job(
        client,
        requester,
        items=4,
        golden=0,
        overlap=2,
        items_per_task=4,
        aggregation="majority_vote",
        overlap_max=4,
        target_confidence=0.9,
    )
    urls = [f"img-{i}.jpg" for i in range(4)]
    # Items 0 and 1: everybody agrees. Items 2 and 3: workers alternate, so the vote stays split.
    workers = [bearer(new_key(app, "worker", f"w{n}")) for n in range(6)]
    for n, headers in enumerate(workers):
        label_for = {u: "cat" if i < 2 else ("cat" if n % 2 else "dog") for i, u in enumerate(urls)}
        while _one_task(client, headers, job["id"], label_for):
            pass
        with session_scope(get_engine(app)) as session:
            aggregate_job(session, job["id"])
    with session_scope(get_engine(app)) as session:
        rows = session.execute(select(Answer.item_id).where(Answer.job_id == job["id"])).scalars().all()
    counts = sorted(Counter(rows).values())
    assert counts == [2, 2, 4, 4], "sure items stop at the minimum, unsure ones go to the maximum"
    results = client.get(f"/v1/jobs/{job['id']}/results", headers=requester).get_json()["results"]
    assert sorted(r["answers"] for r in results) == [2, 2, 4, 4]
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["state"] == "completed"


def test_dynamic_overlap_settings_are_validated(client: FlaskClient, requester: dict[str, str]) -> None:
    from tests.conftest import job_body

    cases = [
        ({"overlap_max": 5}, "target_confidence"),
        ({"target_confidence": 0.9}, "overlap_max"),
        ({"overlap": 3, "overlap_max": 2, "target_confidence": 0.9}, "overlap_max"),
        ({"overlap_max": 5, "target_confidence": 1.5}, "target_confidence"),
    ]
    for extra, field in cases:
        response = client.post("/v1/jobs", json=job_body(**extra), headers=requester)
        assert response.status_code == 422, extra
        assert field in str(response.get_json()["errors"]), response.get_json()
    job = client.post("/v1/jobs", json=job_body(), headers=requester).get_json()
    patched = client.patch(f"/v1/jobs/{job['id']}", json={"overlap_max": 2}, headers=requester)
    assert patched.status_code == 422
