"""Quality rules: sound firing statistics, actions with an audit trail, validated definitions."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from aggregation.spam import chance_evidence
from marketplace.db import get_engine, session_scope
from marketplace.models import Answer, ReviewFlag, WorkerBlock
from marketplace.services.aggregating import aggregate_job
from marketplace.services.rules import DEFAULT_RULES, apply_rules, fires
from tests.conftest import LABELS, bearer, new_key, post_job, work_through

CHANCE = DEFAULT_RULES[0]["condition"]
DEFAULT = DEFAULT_RULES[1]["condition"]
SPAMMER_BOUND = 60  # golden answers; the worst of 3,000 simulated spammers needed 51
SPAM_CROWD = ("spammer", "h1", "h2", "h3", "h4")


def _rq_in_process(app: Flask, monkeypatch: Any) -> None:
    """RQ jobs run here (SimpleWorker) on the test's database and Redis; no aggregation by batch,
    and the pool's draws repeat (one run, not a distribution)."""
    import workers.jobs
    from tests.conftest import REDIS_URL

    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setitem(app.config, "AGGREGATE_EVERY_ANSWERS", 10**9)
    monkeypatch.setitem(app.config, "POOL_SEED", 5)
    workers.jobs._apps.clear()


def _first_firing(accuracy: float, seed: int, answers: int = 300) -> int | None:
    rng, correct = random.Random(seed), 0
    for seen in range(1, answers + 1):
        correct += rng.random() < accuracy
        if fires(DEFAULT, {"golden_seen": seen, "golden_correct": correct}):
            return seen
    return None


def test_default_rule_stops_every_spammer_within_the_bound_and_no_honest_worker() -> None:
    spammers = [_first_firing(0.25, seed) for seed in range(1000)]
    assert all(n is not None and n <= SPAMMER_BOUND for n in spammers)
    honest = [_first_firing(0.8, seed) for seed in range(1000)]
    assert honest.count(None) == 1000, "an honest worker of accuracy 0.8 was banned"


def _first_chance_firing(kind: str, accuracy: float, seed: int, labels: int = 3, answers: int = 300) -> int | None:
    """Answers until the default rule fires for a simulated worker: a tenth of its items
    golden, the rest scored against an aggregate that is right with its confidence, drawn
    from 0.85 to 1."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, labels, answers)
    confidence = rng.uniform(0.85, 1.0, answers)
    shift = rng.integers(1, labels, answers)
    aggregate = np.where(rng.random(answers) < confidence, truth, (truth + shift) % labels)
    if kind == "uniform":
        given = rng.integers(0, labels, answers)
    elif kind == "one_label":
        given = np.zeros(answers, dtype=np.int64)
    else:
        wrong = (truth + rng.integers(1, labels, answers)) % labels
        given = np.where(rng.random(answers) < accuracy, truth, wrong)
    right = np.where(given == aggregate, confidence, (1 - confidence) / (labels - 1))
    golden = rng.random(answers) < 0.1
    right = np.where(golden, (given == truth).astype(float), right)
    total = np.cumsum(chance_evidence(right, labels, CHANCE["threshold"]))
    for seen in range(1, answers + 1):
        if fires(CHANCE, {"chance_scored": seen, "chance_log_ratio": total[seen - 1]}):
            return seen
    return None


def test_model_rule_stops_spammers_fast_and_no_honest_worker() -> None:
    """1,000 of each: uniform and one-label spammers on 3 labels stopped after ~30 answers,
    honest workers of accuracy 0.7 to 0.95 never (the README quotes these figures)."""
    for kind in ("uniform", "one_label"):
        stops = [_first_chance_firing(kind, 0.0, seed) for seed in range(1000)]
        assert None not in stops
        assert np.mean(stops) <= 35 and np.median(stops) <= 30 and max(stops) <= 150, kind
    honest = [_first_chance_firing("honest", 0.7 + 0.25 * (seed % 100) / 100, seed) for seed in range(1000)]
    assert honest.count(None) == 1000, "an honest worker of accuracy 0.7 or more was banned"
    faster = [_first_chance_firing("uniform", 0.0, seed, labels=4) for seed in range(1000)]
    assert np.mean(faster) <= 25


def test_model_rule_at_the_boundary_keeps_walds_bound() -> None:
    """Workers exactly at 0.7 are banned with probability at most 1/1000 each (Wald)."""
    banned = sum(_first_chance_firing("honest", 0.7, 10_000 + seed) is not None for seed in range(1000))
    assert banned <= 2


def test_conditions_need_their_minimum_before_firing() -> None:
    assert not fires(DEFAULT, {"golden_seen": 4, "golden_correct": 0})
    agreement = {"type": "agreement_below", "threshold": 0.5, "min_count": 20}
    assert not fires(agreement, {"compared": 19, "agreed": 0})
    assert fires(agreement, {"compared": 40, "agreed": 2})
    fast = {"type": "too_fast", "seconds_per_item": 1.0, "min_count": 3}
    assert fires(fast, {"timed_tasks": 3, "median_seconds_per_item": 0.2})
    assert not fires(fast, {"timed_tasks": 3, "median_seconds_per_item": 4.0})
    skips = {"type": "skip_share_above", "threshold": 0.5, "min_count": 10}
    assert fires(skips, {"finished_leases": 40, "skipped": 39})
    assert not fires(skips, {"finished_leases": 40, "skipped": 22})


def test_default_rules_ban_a_uniform_spammer_from_its_answers_alone(app: Flask, redis: Any) -> None:
    """Four honest workers (90% right) and one answering at random on a 3-label job with one
    golden item in ten: after aggregation the model rule bans the spammer and nobody else."""
    client = app.test_client()
    requester = bearer(new_key(app, "requester", "req"))
    job = post_job(client, requester, items=150, golden=15, overlap=3, golden_ratio=0.1, items_per_task=5)
    rng = random.Random(7)

    def truth(item: dict[str, Any]) -> str:
        return "cat" if item["data"]["url"].startswith("img-g") else LABELS[int(item["data"]["url"][4:-4]) % 3]

    def work(headers: dict[str, str], answer: Any, tasks: int) -> None:
        for _ in range(tasks):
            lease = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=headers)
            if lease.status_code != 201:
                return
            task = lease.get_json()
            answers = [{"item_id": i["id"], "label": answer(i)} for i in task["items"]]
            done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers)
            assert done.status_code == 200, done.get_json()

    spammer = bearer(new_key(app, "worker", "spammer"))
    work(spammer, lambda item: rng.choice(LABELS), 20)
    honest = [bearer(new_key(app, "worker", f"honest{i}")) for i in range(4)]
    for headers in honest:
        work(headers, lambda item: truth(item) if rng.random() < 0.9 else rng.choice(LABELS), 100)
    spammer_id = client.get("/v1/me", headers=spammer).get_json()["id"]
    with session_scope(get_engine(app)) as session:
        aggregate_job(session, job["id"])
        fired = apply_rules(session, job["id"])
    assert [f["worker_id"] for f in fired] == [spammer_id]
    assert "answers_at_chance" in fired[0]["reason"]
    operator = bearer(new_key(app, "operator", "op"))
    event = client.get("/v1/audit", headers=operator).get_json()[-1]
    figures = event["details"]["figures"]
    assert figures["chance_log_ratio"] >= 6.9 and figures["chance_scored"] == 100


def test_default_rule_bans_a_liar_from_the_job_excludes_its_answers_and_audits(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    job = post_job(client, requester, items=20, golden=20, overlap=2, golden_ratio=0.5, items_per_task=4)
    liar, honest = bearer(new_key(app, "worker", "liar")), bearer(new_key(app, "worker", "honest"))
    work_through(client, liar, job["id"], "dog")  # golden answers are all 'cat'
    work_through(client, honest, job["id"], "cat")
    liar_id = client.get("/v1/me", headers=liar).get_json()["id"]
    with session_scope(get_engine(app)) as session:
        fired = apply_rules(session, job["id"])
        assert [f["worker_id"] for f in fired] == [liar_id]
        assert apply_rules(session, job["id"]) == [], "a rule acts once"
        block = session.execute(select(WorkerBlock).where(WorkerBlock.worker_id == liar_id)).scalar_one()
        assert block.job_id == job["id"] and block.until is None
        excluded = session.execute(select(Answer.excluded).where(Answer.worker_id == liar_id)).scalars().all()
        assert excluded and all(excluded)
    event = client.get("/v1/audit", headers=operator).get_json()[-1]
    assert event["action"] == "ban_job" and event["subject_id"] == liar_id
    assert event["details"]["figures"]["golden_correct"] == 0
    assert event["details"]["figures"]["golden_seen"] >= 5
    assert "answers_at_chance" in event["reason"]  # the model rule comes first and sees it


def test_rules_api_validates_and_scopes(
    app: Flask, client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    job = post_job(client, requester, items=4, golden=4)
    good = {
        "job_id": job["id"],
        "condition": {"type": "agreement_below", "threshold": 0.6, "min_count": 20},
        "action": {"type": "flag"},
    }
    made = client.post("/v1/rules", json=good, headers=requester)
    assert made.status_code == 201, made.get_json()
    bad = [
        ({**good, "condition": {"type": "vibes", "threshold": 0.5}}, "condition"),
        ({**good, "condition": {"type": "agreement_below", "threshold": 1.5}}, "condition"),
        ({**good, "condition": {"type": "too_fast"}}, "condition"),
        ({**good, "action": {"type": "cooldown"}}, "action"),
        ({**good, "action": {"type": "explode"}}, "action"),
        ({"condition": good["condition"], "action": good["action"]}, "job_id"),
    ]
    for body, field in bad:
        response = client.post("/v1/rules", json=body, headers=requester)
        assert response.status_code == 422, body
        assert field in response.get_json()["errors"]["json"], response.get_json()
    other = bearer(new_key(app, "requester", "other"))
    assert client.post("/v1/rules", json=good, headers=other).status_code == 404
    assert client.get("/v1/rules", headers=other).get_json() == []
    glob = {"condition": {"type": "skip_share_above", "threshold": 0.9}, "action": {"type": "flag"}}
    assert client.post("/v1/rules", json=glob, headers=operator).status_code == 201
    listed = client.get(f"/v1/rules?job_id={job['id']}", headers=requester).get_json()
    assert len(listed) == 2
    assert client.delete(f"/v1/rules/{made.get_json()['id']}", headers=other).status_code == 404
    assert client.delete(f"/v1/rules/{made.get_json()['id']}", headers=requester).status_code == 204


def test_flag_rule_records_a_review_flag(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job = post_job(client, requester, items=12, golden=0, overlap=2, items_per_task=4)
    rule = {
        "job_id": job["id"],
        "condition": {"type": "too_fast", "seconds_per_item": 60.0, "min_count": 2},
        "action": {"type": "flag"},
    }
    assert client.post("/v1/rules", json=rule, headers=requester).status_code == 201
    worker = bearer(new_key(app, "worker", "quick"))
    work_through(client, worker, job["id"], "cat")
    with session_scope(get_engine(app)) as session:
        fired = apply_rules(session, job["id"])
        assert [f["action"] for f in fired] == ["flag"]
        assert session.execute(select(ReviewFlag)).scalar_one().figures["timed_tasks"] >= 2


def test_golden_answers_trigger_the_rules_and_stop_a_spammer_within_a_few_tasks(
    app: Flask, client: FlaskClient, requester: dict[str, str], redis: Any, monkeypatch: Any
) -> None:
    from rq import SimpleWorker

    import workers.jobs
    from marketplace import queue
    from tests.conftest import REDIS_URL

    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    workers.jobs._apps.clear()
    job = post_job(client, requester, items=60, golden=30, overlap=1, golden_ratio=0.5, items_per_task=4)
    liar = bearer(new_key(app, "worker", "liar"))
    tasks = 0
    for _ in range(40):
        lease = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=liar)
        if lease.status_code == 204:
            break
        task = lease.get_json()
        answers = [{"item_id": i["id"], "label": "dog"} for i in task["items"]]
        assert (
            client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=liar).status_code
            == 200
        )
        tasks += 1
        SimpleWorker([queue.get_queue(redis, app.config["QUEUE_NAME"])], connection=redis).work(burst=True)
    # 2 golden items a task on average; the default rule needs at most ~9 all-wrong golden answers.
    assert tasks <= 8, f"the liar kept getting work for {tasks} tasks"
    event = client.get("/v1/audit", headers=bearer(new_key(app, "operator", "op"))).get_json()[-1]
    assert event["action"] == "ban_job" and event["details"]["figures"]["golden_correct"] == 0


def test_the_model_rule_stops_a_spammer_from_its_real_answers_between_aggregations(
    app: Flask, client: FlaskClient, requester: dict[str, str], redis: Any, monkeypatch: Any
) -> None:
    """No golden items and no aggregation under way: the rules check queued by each submit reads
    the spammer's real answers against the others' on the same items, which arrive within the
    round (the pool finishes items before it starts new ones), and bans it within a few tasks.
    Before, the check looked only at workers with new golden answers, and the pool gave every
    item its first answer before any its second (150 items: 30 tasks before a second answer)."""
    from rq import SimpleWorker

    from marketplace import queue

    _rq_in_process(app, monkeypatch)
    job = post_job(client, requester, items=150, golden=0, overlap=3, golden_ratio=0.0, items_per_task=5)
    rng = random.Random(11)
    crowd = {name: bearer(new_key(app, "worker", name)) for name in SPAM_CROWD}

    def answer(name: str, item: dict[str, Any]) -> str:
        truth = LABELS[int(item["data"]["url"][4:-4]) % 3]
        return rng.choice(LABELS) if name == "spammer" or rng.random() > 0.9 else truth

    tasks = {name: 0 for name in crowd}
    for _ in range(10):
        for name, headers in crowd.items():
            lease = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=headers)
            if lease.status_code != 201:
                continue
            task = lease.get_json()
            answers = [{"item_id": i["id"], "label": answer(name, i)} for i in task["items"]]
            done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers)
            assert done.status_code == 200, done.get_json()
            tasks[name] += 1
        SimpleWorker([queue.get_queue(redis, app.config["QUEUE_NAME"])], connection=redis).work(burst=True)
    events = client.get("/v1/audit", headers=bearer(new_key(app, "operator", "op"))).get_json()
    bans = [e for e in events if e["action"] == "ban_job"]
    spammer_id = client.get("/v1/me", headers=crowd["spammer"]).get_json()["id"]
    assert [e["subject_id"] for e in bans] == [spammer_id], "the spammer alone is banned"
    assert "answers_at_chance" in bans[0]["reason"]
    assert tasks["spammer"] <= 7, f"the spammer kept getting work for {tasks['spammer']} tasks"


def test_a_spammer_who_stopped_is_banned_when_the_others_answer_its_items(
    app: Flask, client: FlaskClient, requester: dict[str, str], redis: Any, monkeypatch: Any
) -> None:
    """A spammer works first, while nobody else has answered its items, and leaves; the evidence
    against it comes with the honest workers' answers on the same items. The rules check queued
    by their submits looks at the workers who answered those items too, so the spammer is banned
    without submitting again and before any aggregation. Before, the check looked only at the
    submitters, and the spammer waited for the next aggregation (here: never)."""
    from rq import SimpleWorker

    from marketplace import queue

    _rq_in_process(app, monkeypatch)
    job = post_job(client, requester, items=150, golden=0, overlap=3, golden_ratio=0.0, items_per_task=5)
    rng = random.Random(3)
    crowd = {name: bearer(new_key(app, "worker", name)) for name in SPAM_CROWD}
    rq_worker = SimpleWorker([queue.get_queue(redis, app.config["QUEUE_NAME"])], connection=redis)

    def work(name: str) -> None:
        lease = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=crowd[name])
        assert lease.status_code == 201, lease.get_json()
        task = lease.get_json()
        answers = []
        for item in task["items"]:
            truth = LABELS[int(item["data"]["url"][4:-4]) % 3]
            label = rng.choice(LABELS) if name == "spammer" or rng.random() > 0.9 else truth
            answers.append({"item_id": item["id"], "label": label})
        done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=crowd[name])
        assert done.status_code == 200, done.get_json()

    spammer_id = client.get("/v1/me", headers=crowd["spammer"]).get_json()["id"]

    def bans() -> list[int]:
        events = client.get("/v1/audit", headers=bearer(new_key(app, "operator", "op"))).get_json()
        assert all("answers_at_chance" in e["reason"] for e in events if e["action"] == "ban_job")
        return [e["subject_id"] for e in events if e["action"] == "ban_job"]

    for _ in range(10):
        work("spammer")
    rq_worker.work(burst=True)
    assert bans() == [], "no evidence yet: nobody else has answered the spammer's items"
    for _ in range(12):
        for name in ("h1", "h2", "h3", "h4"):
            work(name)
        rq_worker.work(burst=True)
    assert bans() == [spammer_id], "the spammer alone is banned, from the others' later answers"
    with session_scope(get_engine(app)) as session:
        answered = session.execute(select(Answer.id).where(Answer.worker_id == spammer_id)).all()
    assert len(answered) == 50, "banned without working again"


def test_a_rules_check_reads_each_figure_once_for_all_its_workers(app: Flask, client: FlaskClient) -> None:
    """A check of a busy job covers most of its crowd; the figures were three queries per worker
    (the agreement one joining the job's aggregates each time: seconds per check under load,
    `bench.capacity`). Now one grouped query per figure, however many workers, with the same
    figures as each worker's own record."""
    from sqlalchemy import event

    from marketplace.services.rules import worker_figures

    requester = bearer(new_key(app, "requester", "req"))
    job = post_job(client, requester, items=30, golden=6, overlap=3, golden_ratio=0.2, items_per_task=5)
    crowd = [bearer(new_key(app, "worker", f"w{i}")) for i in range(6)]
    for n, headers in enumerate(crowd):
        work_through(client, headers, job["id"], LABELS[n % 3], limit=3)
    ids = [client.get("/v1/me", headers=h).get_json()["id"] for h in crowd]
    engine = get_engine(app)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    with session_scope(engine) as session:
        aggregate_job(session, job["id"])
    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(engine) as session:
            together = worker_figures(session, job["id"], ids)
        reads_for_six = len(statements)
        statements.clear()
        with session_scope(engine) as session:
            alone = {w: worker_figures(session, job["id"], [w])[w] for w in ids}
        reads_one_by_one = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert together == alone
    assert all(together[w]["compared"] > 0 and together[w]["finished_leases"] == 3 for w in ids)
    assert reads_for_six <= 4 and reads_one_by_one == 6 * reads_for_six


def test_rules_checks_are_spaced_by_a_share_of_the_jobs_answers_and_the_sweep_takes_the_rest(
    app: Flask, client: FlaskClient, requester: dict[str, str], redis: Any, monkeypatch: Any
) -> None:
    """A check reads most of a busy job, so one after every submit cost more than the submits
    (bench.capacity). With `RULES_CHECK_SHARE` 0.25 a check runs once the answers since the last
    reach a quarter of the job's: 40 submits of 5 answers, the queue drained after each, make
    far fewer checks than submits; the answers short of a share are checked by the sweep."""
    from rq import SimpleWorker

    import workers.jobs
    from marketplace import queue
    from marketplace.services import rules

    monkeypatch.setenv("MARKETPLACE_RULES_CHECK_SHARE", "0.25")
    _rq_in_process(app, monkeypatch)
    checks: list[int] = []
    looked = rules.workers_with_new_evidence

    def counting(session: Any, job_id: int, since: int) -> Any:
        checks.append(since)
        return looked(session, job_id, since)

    monkeypatch.setattr(rules, "workers_with_new_evidence", counting)
    job = post_job(client, requester, items=300, golden=0, overlap=1, golden_ratio=0.0, items_per_task=5)
    worker = bearer(new_key(app, "worker", "w"))
    rq_worker = SimpleWorker([queue.get_queue(redis, app.config["QUEUE_NAME"])], connection=redis)
    for _ in range(40):
        task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).get_json()
        answers = [{"item_id": i["id"], "label": "cat"} for i in task["items"]]
        done = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker)
        assert done.status_code == 200
        rq_worker.work(burst=True)
    # every submit while the job has < 20 answers (a quarter is < 5), then one per 25% more: ~14
    assert 8 <= len(checks) <= 18, checks
    assert checks == sorted(checks), "each check starts after the last one's answers"
    pending = queue.rules_pending(redis, [job["id"]])[job["id"]]
    assert 0 < pending < 0.25 * 200, "the last answers wait for a share ..."
    assert job["id"] in workers.jobs.sweep()["rules_checks_due"], "... or for the sweep"
    rq_worker.work(burst=True)
    assert queue.rules_pending(redis, [job["id"]])[job["id"]] == 0
    assert workers.jobs.sweep()["rules_checks_due"] == []
