"""Tenants are walls for writes too: a requester's rules act on its own jobs only, and every write
path refuses another tenant's ids, writing nothing."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from marketplace.db import get_engine, session_scope
from marketplace.models import Account, Answer, Assignment, QualityRule, WorkerBlock
from marketplace.services.rules import apply_rules
from tests.conftest import bearer, new_key, post_job, work_through
from tests.test_api_bad_input import assert_error, snapshot

Headers = dict[str, str]


def _id(client: FlaskClient, headers: Headers) -> int:
    return int(client.get("/v1/me", headers=headers).get_json()["id"])


def test_a_requesters_rule_cannot_ban_a_worker_everywhere(
    app: Flask, client: FlaskClient, requester: Headers, operator: Headers
) -> None:
    """The audit's run: requester A's rule `ban_everywhere` with excluded answers banned a worker
    platform wide and dropped its answers on requester B's job. The API now refuses the action
    (403 naming it), and a rule of that kind already stored acts on A's job only."""
    other = bearer(new_key(app, "requester", "B"))
    job_a = post_job(client, requester, items=10, golden=0, overlap=1, golden_ratio=0.0, items_per_task=5)
    job_b = post_job(client, other, items=10, golden=0, overlap=1, golden_ratio=0.0, items_per_task=5)
    rule = {
        "job_id": job_a["id"],
        "condition": {"type": "too_fast", "seconds_per_item": 3600.0, "min_count": 1},
        "action": {"type": "ban_everywhere", "exclude_answers": True},
    }
    refused = assert_error(client.post("/v1/rules", json=rule, headers=requester), 403)
    assert "ban_everywhere" in refused["errors"]["json"]["action"]["type"][0]
    assert client.post("/v1/rules", json=rule, headers=operator).status_code == 201  # an operator may
    with session_scope(get_engine(app)) as session:  # one stored by a requester before the fix
        requester_id = _id(client, requester)
        session.add(
            QualityRule(job_id=job_a["id"], created_by=requester_id, **{k: rule[k] for k in ("condition", "action")})
        )
        session.execute(
            QualityRule.__table__.update().where(QualityRule.created_by != requester_id).values(enabled=False)
        )  # type: ignore[attr-defined]
    worker = bearer(new_key(app, "worker", "both"))
    assert work_through(client, worker, job_b["id"], "cat", limit=1) == 1
    assert work_through(client, worker, job_a["id"], "cat", limit=1) == 1
    worker_id = _id(client, worker)
    with session_scope(get_engine(app)) as session:
        fired = apply_rules(session, job_a["id"], [worker_id])
    assert [f["action"] for f in fired] == ["ban_job"]
    with session_scope(get_engine(app)) as session:
        assert session.get(Account, worker_id).status == "active"
        blocks = session.execute(select(WorkerBlock.job_id).where(WorkerBlock.worker_id == worker_id)).scalars()
        assert list(blocks) == [job_a["id"]]
        kept = session.execute(
            select(Answer.excluded).where(Answer.worker_id == worker_id, Answer.job_id == job_b["id"])
        ).scalars()
        assert list(kept) == [False] * 5  # B's answers stay
    assert client.post("/v1/assignments", json={"job_id": job_b["id"]}, headers=worker).status_code == 201


def test_every_write_path_refuses_another_tenants_ids(
    app: Flask, client: FlaskClient, requester: Headers, operator: Headers
) -> None:
    other = bearer(new_key(app, "requester", "other"))
    job = post_job(
        client, requester, items=10, golden=3, items_per_task=3, qualification={"items": 2, "pass_mark": 0.5}
    )
    rule = client.post(
        "/v1/rules",
        json={
            "job_id": job["id"],
            "condition": {"type": "golden_accuracy_below", "threshold": 0.5},
            "action": {"type": "flag"},
        },
        headers=requester,
    ).get_json()
    owner, thief = bearer(new_key(app, "worker", "owner")), bearer(new_key(app, "worker", "thief"))
    test = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=owner).get_json()
    assert test["kind"] == "qualification"
    owner_id, url = _id(client, owner), f"/v1/assignments/{test['id']}"
    answers = {"answers": [{"item_id": i["id"], "label": "cat"} for i in test["items"]]}
    before = snapshot(app)
    calls: list[tuple[str, str, Any, Headers, int]] = [
        # another requester: the job, its rules and its qualifications look like nothing
        ("PATCH", f"/v1/jobs/{job['id']}", {"overlap": 5}, other, 404),
        ("PATCH", f"/v1/jobs/{job['id']}", {"budget_cents": 1}, other, 404),
        ("POST", f"/v1/jobs/{job['id']}/items", [{"data": {"x": 1}}], other, 404),
        ("POST", f"/v1/jobs/{job['id']}/pause", None, other, 404),
        ("POST", f"/v1/jobs/{job['id']}/cancel", None, other, 404),
        ("POST", f"/v1/jobs/{job['id']}/aggregate", None, other, 404),
        (
            "POST",
            "/v1/rules",
            {
                "job_id": job["id"],
                "condition": {"type": "too_fast", "seconds_per_item": 1.0},
                "action": {"type": "flag"},
            },
            other,
            404,
        ),
        ("DELETE", f"/v1/rules/{rule['id']}", None, other, 404),
        # operators' writes: not a requester's, not a worker's
        ("DELETE", f"/v1/jobs/{job['id']}/qualifications/{owner_id}", None, requester, 403),
        ("POST", f"/v1/workers/{owner_id}/ban", {"reason": "x"}, requester, 403),
        ("DELETE", f"/v1/workers/{owner_id}/ban", {"reason": "x"}, requester, 403),
        ("POST", "/v1/payouts/runs", None, requester, 403),
        ("POST", "/v1/payouts/runs", None, owner, 403),
        ("POST", f"/v1/accounts/{_id(client, requester)}/funds", {"amount_cents": 5, "currency": "USD"}, other, 403),
        # another worker: the task looks like nothing
        ("POST", f"{url}/submit", answers, thief, 404),
        ("POST", f"{url}/skip", None, thief, 404),
    ]
    for method, path, body, headers, status in calls:
        assert_error(client.open(path, method=method, json=body, headers=headers), status)
    assert snapshot(app) == before
    with session_scope(get_engine(app)) as session:
        assert session.get(Assignment, test["id"]).state == "leased"
        assert session.get(QualityRule, rule["id"]).enabled
    view = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()
    assert (view["overlap"], view["budget_cents"], view["state"]) == (3, job["budget_cents"], "running")
