"""Worker quality over time and rankings with confidence intervals (operators; requesters on
their own jobs)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from marketplace.db import get_engine, session_scope
from marketplace.models import utcnow
from marketplace.services.aggregating import aggregate_job
from marketplace.services.quality import wilson
from tests.conftest import bearer, new_key, post_job, work_through


def test_wilson_interval_is_honest_for_small_counts() -> None:
    assert wilson(0, 0) == (None, None)
    low, high = wilson(1, 1)
    assert low is not None and low < 0.25 and high == 1.0
    low, high = wilson(50, 100)
    assert low == 0.4038 and high == 0.5962


def test_ranking_puts_the_liar_first_and_daily_rows_show_the_day(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    job = post_job(client, requester, items=10, golden=10, overlap=3, golden_ratio=0.5, items_per_task=4)
    people = {name: bearer(new_key(app, "worker", name)) for name in ("honest1", "honest2", "liar")}
    for name, headers in people.items():
        work_through(client, headers, job["id"], "dog" if name == "liar" else "cat")
    with session_scope(get_engine(app)) as session:
        aggregate_job(session, job["id"])
    ids = {name: client.get("/v1/me", headers=h).get_json()["id"] for name, h in people.items()}
    ranked = client.get("/v1/workers?sort=golden_accuracy", headers=operator).get_json()
    assert [w["worker_id"] for w in ranked][0] == ids["liar"]
    liar = ranked[0]
    assert liar["golden_seen"] > 0 and liar["golden_correct"] == 0
    assert liar["golden_ci_low"] == 0.0 and 0.0 < liar["golden_ci_high"] < 0.8
    assert liar["agreement"] == 0.0
    honest = next(w for w in ranked if w["worker_id"] == ids["honest1"])
    assert honest["agreement"] == 1.0 and honest["golden_ci_high"] == 1.0
    days = client.get(f"/v1/workers/{ids['liar']}/quality", headers=operator).get_json()
    assert [d["day"] for d in days] == [utcnow().date().isoformat()]
    assert days[0]["golden_seen"] == liar["golden_seen"]


def test_requesters_see_only_their_own_jobs(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job = post_job(client, requester, items=4, golden=2, overlap=1)
    worker = bearer(new_key(app, "worker", "w"))
    work_through(client, worker, job["id"], "cat")
    mine = client.get("/v1/workers", headers=requester).get_json()
    assert len(mine) == 1 and mine[0]["answers"] > 0
    other = bearer(new_key(app, "requester", "other"))
    assert client.get("/v1/workers", headers=other).get_json() == []
    assert client.get(f"/v1/workers?job_id={job['id']}", headers=other).status_code == 404
    worker_id = mine[0]["worker_id"]
    assert client.get(f"/v1/workers/{worker_id}/quality", headers=other).get_json() == []
    assert client.get("/v1/workers", headers=worker).status_code == 403
    assert client.get("/v1/workers?sort=bogus", headers=requester).status_code == 422
