"""Redundancy invariants under real concurrency on PostgreSQL.

Many threads lease, submit, skip and abandon at once (each request on its own connection),
then the database is checked: no item over its overlap, no worker twice on an item, every
accepted submit stored, abandoned (expired) leases reissued until every item is complete.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import func, select, update

from marketplace.db import get_engine, session_scope
from marketplace.models import Answer, Assignment, AssignmentItem, Job, Slot, utcnow
from marketplace.pool.release import EXPIRY_GRACE
from tests.conftest import bearer, new_key, post_job

ITEMS, GOLDEN, OVERLAP = 80, 10, 3


def _crowd_round(
    app: Flask, workers: list[dict[str, str]], job_id: int, threads: int, abandon: float, skip: float, seed: int
) -> dict[str, Any]:
    """Workers spread over threads, each looping until it gets 204."""
    accepted: dict[int, int] = {}
    abandoned: list[int] = []
    lock = threading.Lock()
    errors: list[str] = []

    def run(chunk: list[dict[str, str]], thread_seed: int) -> None:
        rng = random.Random(thread_seed)
        client = app.test_client()
        for headers in chunk:
            for _ in range(200):  # bounded
                lease = client.post("/v1/assignments", json={"job_id": job_id}, headers=headers)
                if lease.status_code == 204:
                    break
                if lease.status_code != 201:
                    errors.append(f"lease {lease.status_code} {lease.get_data(as_text=True)[:200]}")
                    return
                task = lease.get_json()
                roll = rng.random()
                if roll < abandon:
                    with lock:
                        abandoned.append(task["id"])
                    continue
                if roll < abandon + skip:
                    if client.post(f"/v1/assignments/{task['id']}/skip", headers=headers).status_code != 200:
                        errors.append("skip failed")
                    continue
                answers = [{"item_id": i["id"], "label": rng.choice(["cat", "dog", "bird"])} for i in task["items"]]
                done = client.post(
                    f"/v1/assignments/{task['id']}/submit",
                    json={"answers": answers},
                    headers={**headers, "Idempotency-Key": f"k{task['id']}"},
                )
                if done.status_code != 200:
                    errors.append(f"submit {done.status_code} {done.get_data(as_text=True)[:200]}")
                    return
                with lock:
                    accepted[task["id"]] = len(answers)

    chunks = [workers[i::threads] for i in range(threads)]
    pool = [threading.Thread(target=run, args=(chunk, seed * 100 + n)) for n, chunk in enumerate(chunks)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
    assert not errors, errors[:5]
    return {"accepted": accepted, "abandoned": abandoned}


def _assert_every_slot_accounted_once(engine: Any, job_id: int) -> None:
    with session_scope(engine) as session:
        answered = session.execute(
            select(Answer.item_id, Answer.round).where(Answer.job_id == job_id, Answer.is_golden.is_(False))
        ).all()
        free = session.execute(select(Slot.item_id, Slot.round).where(Slot.job_id == job_id)).all()
        leased = session.execute(
            select(AssignmentItem.item_id, AssignmentItem.round)
            .join(Assignment, Assignment.id == AssignmentItem.assignment_id)
            .where(Assignment.job_id == job_id, Assignment.state == "leased", AssignmentItem.round.is_not(None))  # type: ignore[union-attr]
        ).all()
    seen = Counter([*answered, *free, *leased])
    assert {pair for pair, n in seen.items() if n != 1} == set(), "an (item, round) is held twice"
    assert len(seen) == ITEMS * OVERLAP, "an (item, round) was lost"


def test_concurrent_crowd_never_over_issues_and_loses_nothing(app: Flask) -> None:
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    job = post_job(
        client,
        requester,
        items=ITEMS,
        golden=GOLDEN,
        overlap=OVERLAP,
        items_per_task=4,
        golden_ratio=0.25,
        lease_seconds=600,
    )
    workers = [bearer(new_key(app, "worker", f"w{i}")) for i in range(30)]

    first = _crowd_round(app, workers, job["id"], threads=12, abandon=0.15, skip=0.1, seed=1)
    assert first["abandoned"], "the run should abandon some leases"
    engine = get_engine(app)
    with session_scope(engine) as session:
        # Abandoned leases run out: their deadline (and the grace) passes.
        session.execute(
            update(Assignment)
            .where(Assignment.id.in_(first["abandoned"]))  # type: ignore[union-attr]
            .values(expires_at=utcnow() - EXPIRY_GRACE - timedelta(seconds=1))
        )
    second = _crowd_round(app, workers, job["id"], threads=12, abandon=0.0, skip=0.0, seed=2)
    accepted = {**first["accepted"], **second["accepted"]}
    # Nothing lost at any point: every (item, round) is answered, free or leased, exactly once.
    _assert_every_slot_accounted_once(engine, job["id"])
    # A 204 means "nothing for you now": a lease can find the last slots locked by concurrent
    # leases, or being returned by a concurrent reclaim, and a worker stops at its first 204
    # here. Real workers poll again; so do these, until a round finds nothing (bounded).
    for extra in range(5):
        more = _crowd_round(app, workers, job["id"], threads=12, abandon=0.0, skip=0.0, seed=3 + extra)
        accepted.update(more["accepted"])
        if not more["accepted"]:
            break

    with session_scope(engine) as session:
        real = session.execute(
            select(Answer.item_id, Answer.round).where(Answer.job_id == job["id"], Answer.is_golden.is_(False))
        ).all()
        per_item = Counter(item for item, _ in real)
        assert len(per_item) == ITEMS
        assert set(per_item.values()) == {OVERLAP}, "an item is over or under its overlap"
        rounds: dict[int, set[int]] = {}
        for item, round_no in real:
            rounds.setdefault(item, set()).add(round_no)
        assert all(r == set(range(OVERLAP)) for r in rounds.values())
        pairs = session.execute(
            select(AssignmentItem.worker_id, AssignmentItem.item_id).where(AssignmentItem.job_id == job["id"])
        ).all()
        assert len(pairs) == len(set(pairs)), "a worker saw an item twice"
        answer_pairs = session.execute(select(Answer.worker_id, Answer.item_id).where(Answer.job_id == job["id"])).all()
        assert len(answer_pairs) == len(set(answer_pairs)), "a worker answered an item twice"
        stored = dict(
            session.execute(
                select(Answer.assignment_id, func.count())
                .where(Answer.job_id == job["id"])
                .group_by(Answer.assignment_id)
            )
            .tuples()
            .all()
        )
        assert stored == accepted, "an accepted submit is missing or differs"
        states = dict(
            session.execute(
                select(Assignment.state, func.count()).where(Assignment.job_id == job["id"]).group_by(Assignment.state)
            )
            .tuples()
            .all()
        )
        assert states.get("expired") == len(first["abandoned"]), "abandoned leases were not all expired"
        assert "leased" not in states
        assert session.execute(select(func.count()).where(Slot.job_id == job["id"])).scalar_one() == 0
        assert session.get(Job, job["id"]).state == "completed"  # type: ignore[union-attr]


def test_concurrent_retries_of_one_submit_store_it_once(app: Flask) -> None:
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    job = post_job(client, requester, items=10, golden=0, overlap=1, items_per_task=5)
    worker = bearer(new_key(app, "worker"))
    task = client.post("/v1/assignments", json={}, headers=worker).get_json()
    body = {"answers": [{"item_id": i["id"], "label": "dog"} for i in task["items"]]}
    results: list[tuple[int, Any]] = []

    def retry() -> None:
        response = app.test_client().post(
            f"/v1/assignments/{task['id']}/submit", json=body, headers={**worker, "Idempotency-Key": "same"}
        )
        results.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _ in results] == [200] * 8
    assert len({str(body) for _, body in results}) == 1, "retries returned different results"
    with session_scope(get_engine(app)) as session:
        count = session.execute(select(func.count()).where(Answer.assignment_id == task["id"])).scalar_one()
    assert count == 5
    assert job["id"]
