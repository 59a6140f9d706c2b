"""Golden annotation answers: scored in [0, 1] off the submit, read as golden accuracy by the
rules (a spammer drawing nothing or random boxes is stopped as fast as a classification spammer),
qualification and acceptance; a submit does the same work whether it holds golden items or not."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import select

from marketplace import queue
from marketplace.db import dispose, get_engine, session_scope
from marketplace.models import Answer, Qualification
from marketplace.pool import submit as pool_submit
from tests.annotation_jobs import GOLD_BOXES, HEIGHT, WIDTH, annotation_job, gold_for, lease, submit
from tests.conftest import bearer, make_app, new_key

Headers = dict[str, str]


def run_queue(app: Flask, redis: Redis) -> None:
    SimpleWorker([queue.get_queue(redis, app.config["QUEUE_NAME"])], connection=redis).work(burst=True)


def golden_rows(app: Flask) -> list[tuple[Any, float | None, bool | None]]:
    with session_scope(get_engine(app)) as session:
        rows = session.execute(
            select(Answer.value, Answer.score, Answer.correct).where(Answer.is_golden).order_by(Answer.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def shifted(objects: list[dict[str, Any]], dx: float) -> list[dict[str, Any]]:
    return [{**o, "bbox": [o["bbox"][0] + dx, *o["bbox"][1:]]} for o in objects]


def test_golden_boxes_are_scored_by_the_rules_check_and_read_as_golden_accuracy(
    app: Flask, client: FlaskClient, requester: Headers, operator: Headers, redis: Redis, rq_env: None
) -> None:
    job = annotation_job(client, requester, items=8, golden=8, golden_ratio=0.5, items_per_task=4, overlap=1)
    worker = bearer(new_key(app, "worker"))
    task = lease(client, worker, job["id"])
    # 10 px to the right on 50 px wide boxes: IoU 40/60 for the person, 150/170 for the car
    answers = [{"item_id": i["id"], "objects": shifted(GOLD_BOXES, 10)} for i in task["items"]]
    assert submit(client, worker, task, answers).status_code == 200
    assert all(score is None for _, score, _ in golden_rows(app))  # not scored by the submit
    run_queue(app, redis)  # the rules check queued by the submit scores them
    expected = (40 / 60 + 150 / 170) / 2  # both matched (IoU >= 0.5): F1 = 1, times the mean IoU
    rows = golden_rows(app)
    assert len(rows) == 2 and all(score == pytest.approx(expected) and correct for _, score, correct in rows)
    worker_id = client.get("/v1/me", headers=worker).get_json()["id"]
    (today,) = client.get(f"/v1/workers/{worker_id}/quality?job_id={job['id']}", headers=operator).get_json()
    assert today["golden_seen"] == 2 and today["golden_correct"] == 2
    assert today["golden_accuracy"] == pytest.approx(expected, abs=1e-4)  # the mean score


def test_scoring_twice_changes_nothing(app: Flask, client: FlaskClient, requester: Headers) -> None:
    from marketplace.services import scoring

    job = annotation_job(client, requester, items=4, golden=4, golden_ratio=0.5, items_per_task=4, overlap=1)
    worker = bearer(new_key(app, "worker"))
    task = lease(client, worker, job["id"])
    assert submit(client, worker, task, [{"item_id": i["id"], "objects": []} for i in task["items"]]).status_code == 200
    with session_scope(get_engine(app)) as session:
        assert scoring.score_pending(session, job["id"]) == 2
    with session_scope(get_engine(app)) as session:
        assert scoring.score_pending(session, job["id"]) == 0
    assert [(score, correct) for _, score, correct in golden_rows(app)] == [(0.0, False)] * 2  # nothing drawn


@pytest.mark.parametrize(
    ("kind", "answer", "score"),
    [
        ("polygon", gold_for("polygon"), 1.0),
        ("keypoints", gold_for("keypoints"), 1.0),
        ("multilabel", {"labels": ["sunny"]}, 0.5),  # Jaccard of {sunny} and {sunny, people}
        ("multilabel", {"labels": []}, 0.0),
    ],
)
def test_other_types_are_scored_too(
    app: Flask, client: FlaskClient, requester: Headers, kind: str, answer: dict[str, Any], score: float
) -> None:
    from marketplace.services import scoring

    job = annotation_job(client, requester, kind, items=4, golden=4, golden_ratio=0.5, items_per_task=4, overlap=1)
    worker = bearer(new_key(app, "worker"))
    task = lease(client, worker, job["id"])
    assert submit(client, worker, task, [{"item_id": i["id"], **answer} for i in task["items"]]).status_code == 200
    with session_scope(get_engine(app)) as session:
        scoring.score_pending(session, job["id"])
    assert [s for _, s, _ in golden_rows(app)] == [pytest.approx(score)] * 2


def random_boxes(rng: random.Random) -> list[dict[str, Any]]:
    boxes = []
    for _ in range(rng.randint(1, 3)):
        w, h = rng.uniform(10, 150), rng.uniform(10, 200)
        boxes.append(
            {
                "label": rng.choice(["person", "car"]),
                "bbox": [rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h), w, h],
            }
        )
    return boxes


def honest_boxes(rng: random.Random) -> list[dict[str, Any]]:
    return [{**o, "bbox": [v + rng.uniform(-3, 3) for v in o["bbox"][:2]] + o["bbox"][2:]} for o in GOLD_BOXES]


def work_until_stopped(
    app: Flask, client: FlaskClient, redis: Redis, job_id: int, draw: Any, limit: int = 20
) -> tuple[Headers, int]:
    """Lease, answer every item with `draw()`, run the queued rules check; tasks done before
    the lease was refused (or `limit`)."""
    worker = bearer(new_key(app, "worker"))
    for done in range(limit):
        leased = client.post("/v1/assignments", json={"job_id": job_id}, headers=worker)
        if leased.status_code == 204:
            return worker, done
        task = leased.get_json()
        answers = [{"item_id": i["id"], "objects": draw()} for i in task["items"]]
        assert submit(client, worker, task, answers).status_code == 200
        run_queue(app, redis)
    return worker, limit


@pytest.mark.parametrize("spammer", ["nothing", "random boxes"])
def test_a_box_spammer_is_stopped_by_the_default_rule_as_fast_as_a_label_spammer(
    app: Flask, client: FlaskClient, requester: Headers, operator: Headers, redis: Redis, rq_env: None, spammer: str
) -> None:
    """Two golden items a task: the default rule for annotation jobs (mean golden score below 0.5
    at z = 3.5) needs 13 golden answers scoring 0, i.e. 7 tasks; a uniform classification spammer
    on 4 labels needs 13 golden answers on average (tests/test_rules.py), a liar on a
    classification 6. An honest worker on the same job keeps working."""
    job = annotation_job(client, requester, items=80, golden=40, golden_ratio=0.5, items_per_task=4, overlap=2)
    rng = random.Random(7)
    draw = (lambda: []) if spammer == "nothing" else (lambda: random_boxes(rng))
    _, tasks = work_until_stopped(app, client, redis, job["id"], draw)
    assert tasks <= 8, f"the spammer kept getting work for {tasks} tasks"
    event = client.get("/v1/audit", headers=operator).get_json()[-1]
    assert event["action"] == "ban_job" and event["details"]["figures"]["golden_seen"] <= 14
    assert event["details"]["figures"]["golden_correct"] < 1  # the sum of scores, near 0
    _, honest_tasks = work_until_stopped(app, client, redis, job["id"], lambda: honest_boxes(rng), limit=10)
    assert honest_tasks == 10


def test_a_qualification_test_on_boxes_is_graded_on_the_mean_score(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = annotation_job(
        client,
        requester,
        items=8,
        golden=6,
        items_per_task=3,
        golden_ratio=0.0,
        overlap=1,
        qualification={"items": 3, "pass_mark": 0.8},
    )
    good, bad = bearer(new_key(app, "worker", "good")), bearer(new_key(app, "worker", "bad"))
    for worker, objects, outcome in ((good, GOLD_BOXES, "passed"), (bad, shifted(GOLD_BOXES, 10), "failed")):
        test = lease(client, worker, job["id"])
        assert test["kind"] == "qualification"
        done = submit(client, worker, test, [{"item_id": i["id"], "objects": objects} for i in test["items"]])
        assert done.get_json()["qualification"] == outcome  # a mean of 0.77 is under the 0.8 mark
    with session_scope(get_engine(app)) as session:
        states = sorted(session.execute(select(Qualification.state, Qualification.correct)).all())
    assert states == [("failed", 3), ("passed", 3)]  # each answer passes (>= 0.5); the mean decides


@pytest.fixture
def quiet_app(database_url: str, redis: Redis) -> Iterator[Flask]:
    application = make_app(database_url, AGGREGATE_EVERY_ANSWERS=10**9)
    yield application
    dispose(application)


def _work_of_a_submit(app: Flask, worker: Headers, job_id: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements and Redis commands of one box submit."""
    client = app.test_client()
    task = lease(client, worker, job_id)
    connection = queue.get_redis(app)
    connection.flushdb()
    seen: list[str] = []
    original = connection.execute_command

    def recording(*args: Any, **options: Any) -> Any:
        seen.append(f"redis {args[0]}")
        return original(*args, **options)

    for name in ("fetch_one", "fetch_all"):
        real = getattr(pool_submit, name)
        monkeypatch.setattr(
            pool_submit,
            name,
            lambda cur, row, statement, params, real=real: (
                seen.append(statement.sql) or real(cur, row, statement, params)
            ),
        )
    connection.execute_command = recording  # type: ignore[method-assign]
    try:
        done = submit(client, worker, task, [{"item_id": i["id"], "objects": GOLD_BOXES} for i in task["items"]])
    finally:
        connection.execute_command = original  # type: ignore[method-assign]
        monkeypatch.undo()
    assert done.status_code == 200, done.get_json()
    return seen


def test_a_box_submit_holding_a_golden_item_does_the_same_work_as_one_without(
    quiet_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = quiet_app.test_client()
    requester = bearer(new_key(quiet_app, "requester"))
    plain = annotation_job(client, requester, items=10, golden=2, golden_ratio=0.0, items_per_task=2)
    mixed = annotation_job(client, requester, items=10, golden=6, golden_ratio=0.5, items_per_task=2)
    worker = bearer(new_key(quiet_app, "worker"))
    _work_of_a_submit(quiet_app, worker, plain["id"], monkeypatch)  # warm: RQ asks the server's version once
    without = _work_of_a_submit(quiet_app, worker, plain["id"], monkeypatch)
    holding = _work_of_a_submit(quiet_app, worker, mixed["id"], monkeypatch)
    assert without == holding
    assert any(s.startswith("redis") for s in without) and any("INSERT INTO answer" in s for s in without)
