"""Background aggregation through RQ on real Redis: batches, on demand, reproducible, recorded."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import select

from marketplace import queue
from marketplace.db import get_engine, session_scope
from marketplace.models import AggregationRun
from tests.conftest import bearer, new_key, post_job

TRUTH = "cat"


def _run_queue(app: Flask, redis: Redis) -> None:
    worker = SimpleWorker([queue.get_queue(redis, app.config["QUEUE_NAME"])], connection=redis)
    assert worker.work(burst=True)


def _crowd(app: Flask, client: FlaskClient, job_id: int, honest: int = 4, liars: int = 1) -> dict[int, str]:
    """Honest workers always answer TRUTH, liars always 'dog'; returns worker id -> kind."""
    kinds: dict[int, str] = {}
    people = [("honest", h) for h in range(honest)] + [("liar", n) for n in range(liars)]
    for kind, n in people:
        headers = bearer(new_key(app, "worker", f"{kind}{n}"))
        kinds[client.get("/v1/me", headers=headers).get_json()["id"]] = kind
        for _ in range(100):
            lease = client.post("/v1/assignments", json={"job_id": job_id}, headers=headers)
            if lease.status_code == 204:
                break
            task = lease.get_json()
            label = TRUTH if kind == "honest" else "dog"
            answers = [{"item_id": i["id"], "label": label} for i in task["items"]]
            assert (
                client.post(
                    f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers
                ).status_code
                == 200
            )
    return kinds


def _results(client: FlaskClient, job_id: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    return client.get(f"/v1/jobs/{job_id}/results?limit=1000", headers=headers).get_json()["results"]


def test_on_demand_aggregation_records_method_version_and_answers(
    app: Flask, client: FlaskClient, requester: dict[str, str], redis: Redis, rq_env: None
) -> None:
    job = post_job(client, requester, items=10, golden=4, overlap=3, aggregation="dawid_skene")
    kinds = _crowd(app, client, job["id"])
    queued = client.post(f"/v1/jobs/{job['id']}/aggregate", headers=requester)
    assert queued.status_code == 202
    _run_queue(app, redis)
    results = _results(client, job["id"], requester)
    assert len(results) == 10, "one result per real item, golden items left out"
    for row in results:
        assert row["label"] == TRUTH
        assert 0.0 <= row["confidence"] <= 1.0
        assert row["method"].startswith("dawid_skene") or "dawid_skene" in row["method"]
        assert row["version"]
        assert row["answers"] == 3
    quality = {q["worker_id"]: q for q in client.get(f"/v1/jobs/{job['id']}/workers", headers=requester).get_json()}
    liars = [q for w, q in quality.items() if kinds[w] == "liar"]
    honest = [q for w, q in quality.items() if kinds[w] == "honest"]
    for q in liars:
        assert q["golden_seen"] == 0 or q["golden_accuracy"] < 0.5
        assert q["agreement"] is not None and q["agreement"] < 0.5
    for q in honest:
        assert q["agreement"] == 1.0
        if q["golden_seen"]:
            assert q["golden_accuracy"] == 1.0, "the raw share: all right is 1.0"
            assert 0.5 < q["golden_accuracy_smoothed"] < 1.0, "smoothed: never a flat 100%"
    progress = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["progress"]
    assert progress["last_aggregation"]["answers_used"] == progress["answers"] + progress["golden_answers"]


def test_aggregation_is_reproducible_and_runs_in_batches(
    app: Flask, client: FlaskClient, requester: dict[str, str], redis: Redis, rq_env: None
) -> None:
    app.config["AGGREGATE_EVERY_ANSWERS"] = 7
    job = post_job(client, requester, items=12, golden=3, overlap=3, aggregation="dawid_skene")
    _crowd(app, client, job["id"], honest=3, liars=2)
    queued = [job.func_name for job in queue.get_queue(redis, app.config["QUEUE_NAME"]).jobs]
    assert queued.count(queue.AGGREGATE_JOB) == 1, "submits queue one batch aggregation, not one per answer"
    assert set(queued) <= {queue.AGGREGATE_JOB, queue.RULES_JOB}
    _run_queue(app, redis)
    first = _results(client, job["id"], requester)

    def runs() -> list[AggregationRun]:
        with session_scope(get_engine(app)) as session:
            query = select(AggregationRun).where(AggregationRun.job_id == job["id"]).order_by(AggregationRun.id)
            return list(session.execute(query).scalars())

    client.post(f"/v1/jobs/{job['id']}/aggregate", headers=requester)
    _run_queue(app, redis)
    assert len(runs()) == 1, "nothing changed: the run is skipped"
    for method in ("majority_vote", "dawid_skene"):  # a refit from scratch, then the original method again
        assert client.patch(f"/v1/jobs/{job['id']}", json={"aggregation": method}, headers=requester).status_code == 200
        client.post(f"/v1/jobs/{job['id']}/aggregate", headers=requester)
        _run_queue(app, redis)
    assert _results(client, job["id"], requester) == first, "same answers and settings, same result"
    recorded = runs()
    assert [r.method for r in recorded] == ["dawid_skene", "majority_vote", "dawid_skene"]
    assert len({r.answers_used for r in recorded}) == 1 and recorded[0].answers_used > 0


def test_a_refit_waits_for_a_share_of_new_answers_unless_answers_were_left_out(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    """A refit reads the whole job: one every 200 answers cost the square of the job's size. With
    a pace, new answers short of `share` of the last run's wait (`waiting`), unless the last run
    is older than `max_wait_seconds`, the job finished, or answers were left out (a ban)."""
    from marketplace.models import Answer
    from marketplace.services.aggregating import Pace, aggregate_job

    job = post_job(client, requester, items=60, golden=0, overlap=1, items_per_task=5)
    worker = bearer(new_key(app, "worker", "w"))

    def tasks(n: int) -> None:
        for _ in range(n):
            task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).get_json()
            answers = {"answers": [{"item_id": i["id"], "label": TRUTH} for i in task["items"]]}
            assert client.post(f"/v1/assignments/{task['id']}/submit", json=answers, headers=worker).status_code == 200

    def run(pace: Pace) -> dict[str, Any]:
        with session_scope(get_engine(app)) as session:
            return aggregate_job(session, job["id"], pace)

    half = Pace(share=0.5, max_wait_seconds=3600)
    tasks(4)
    assert run(half)["answers"] == 20, "the first run does not wait"
    tasks(1)
    assert run(half).get("waiting"), "5 new answers < half of 20"
    assert run(Pace(share=0.5, max_wait_seconds=0))["answers"] == 25, "the last run is old enough"
    tasks(2)
    assert run(half).get("waiting"), "10 new answers < half of 25"
    tasks(1)
    assert run(half)["answers"] == 40, "15 new answers >= half of 25"
    tasks(1)
    with session_scope(get_engine(app)) as session:
        first = session.execute(select(Answer).where(Answer.job_id == job["id"]).order_by(Answer.id)).scalars().first()
        first.excluded = True
    assert run(half)["answers"] == 44, "an answer left out: the results follow at once"
