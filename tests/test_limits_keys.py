"""Rate limits (429 with Retry-After, the hot path's requests included) and key rotation and
revocation."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from redis import Redis

from marketplace import auth
from marketplace.db import dispose
from tests.conftest import bearer, make_app, new_key, post_job


@pytest.fixture
def limited(database_url: str, redis: Redis) -> Flask:
    app = make_app(
        database_url,
        RATE_LIMIT_LEASES="3/minute",
        RATE_LIMIT_SUBMITS="2/minute",
        RATE_LIMIT_UPLOADS="2/minute",
        RATE_LIMIT_FAILED_AUTH="3/minute",
        MAX_OPEN_LEASES_PER_JOB=3,  # three leases of one job reach the rate limit, not the cap
    )
    yield app
    dispose(app)


def _429(response: object) -> int:
    assert response.status_code == 429, response.get_json()  # type: ignore[attr-defined]
    body = response.get_json()  # type: ignore[attr-defined]
    assert body["code"] == 429 and "rate limit" in body["message"]
    retry_after = int(response.headers["Retry-After"])  # type: ignore[attr-defined]
    assert 1 <= retry_after <= 60
    return retry_after


def test_leases_and_submits_are_limited_per_worker_key_on_the_hot_path(limited: Flask) -> None:
    client = limited.test_client()
    requester = bearer(new_key(limited, "requester"))
    job = post_job(client, requester, items=30, golden=2)
    first, second = bearer(new_key(limited, "worker")), bearer(new_key(limited, "worker"))
    tasks = []
    for _ in range(3):
        lease = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=first)
        assert lease.status_code == 201
        tasks.append(lease.get_json())
    _429(client.post("/v1/assignments", json={"job_id": job["id"]}, headers=first))
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=second).status_code == 201
    for task in tasks[:2]:
        answers = [{"item_id": i["id"], "label": "cat"} for i in task["items"]]
        assert (
            client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=first).status_code
            == 200
        )
    answers = [{"item_id": i["id"], "label": "cat"} for i in tasks[2]["items"]]
    _429(client.post(f"/v1/assignments/{tasks[2]['id']}/submit", json={"answers": answers}, headers=first))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'marketplace_rate_limited_total{limit="leases"}' in metrics


def test_uploads_are_limited_per_requester(limited: Flask) -> None:
    client = limited.test_client()
    requester = bearer(new_key(limited, "requester"))
    other = bearer(new_key(limited, "requester"))
    job = post_job(client, requester, items=2, golden=1, launch=False)  # one upload
    items = [{"data": {"url": "x.jpg"}}]
    assert client.post(f"/v1/jobs/{job['id']}/items", json=items, headers=requester).status_code == 201
    _429(client.post(f"/v1/jobs/{job['id']}/items", json=items, headers=requester))
    other_job = post_job(client, other, items=2, golden=1, launch=False)
    assert other_job["id"] != job["id"]


def test_failed_authentications_are_limited_per_address_and_good_keys_still_pass(limited: Flask) -> None:
    client = limited.test_client()
    good = bearer(new_key(limited, "worker"))
    for attempt in range(3):
        assert client.get("/v1/me", headers=bearer(f"mk_guess{attempt}")).status_code == 401
    _429(client.get("/v1/me", headers=bearer("mk_guess-more")))
    assert client.get("/v1/me", headers=good).status_code == 200
    elsewhere = client.get("/v1/me", headers=bearer("mk_guess"), environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert elsewhere.status_code == 401


def test_a_user_rotates_its_key_and_the_old_one_lasts_its_grace(app: Flask) -> None:
    client = app.test_client()
    old = bearer(new_key(app, "worker"))
    rotated = client.post("/v1/me/key", json={"grace_seconds": 1}, headers=old)
    assert rotated.status_code == 201, rotated.get_json()
    new = bearer(rotated.get_json()["key"])
    assert client.get("/v1/me", headers=new).status_code == 200
    assert client.get("/v1/me", headers=old).status_code == 200  # within the grace period
    time.sleep(1.1)
    auth.forget()  # as if the cache's bound (auth.CACHE_SECONDS) had passed
    assert client.get("/v1/me", headers=old).status_code == 401
    assert client.get("/v1/me", headers=new).status_code == 200
    too_long = client.post("/v1/me/key", json={"grace_seconds": 8 * 86400}, headers=new)
    assert too_long.status_code == 422 and "grace_seconds" in too_long.get_json()["errors"]["json"]


def test_an_operator_revokes_every_key_of_an_account(app: Flask) -> None:
    client = app.test_client()
    operator = bearer(new_key(app, "operator"))
    requester = bearer(new_key(app, "requester"))
    old = bearer(new_key(app, "worker"))
    worker_id = client.get("/v1/me", headers=old).get_json()["id"]
    graced = bearer(client.post("/v1/me/key", json={"grace_seconds": 3600}, headers=old).get_json()["key"])
    assert client.get("/v1/me", headers=old).status_code == 200
    refused = client.post(f"/v1/accounts/{worker_id}/keys/revoke", json={}, headers=requester)
    assert refused.status_code == 403  # operators only
    revoked = client.post(
        f"/v1/accounts/{worker_id}/keys/revoke", json={"reason": "leaked", "reissue": True}, headers=operator
    )
    assert revoked.status_code == 200
    assert revoked.get_json()["keys_revoked"] == 2
    for key in (old, graced):  # at once in this process (the cache is dropped)
        assert client.get("/v1/me", headers=key).status_code == 401
    assert client.get("/v1/me", headers=bearer(revoked.get_json()["key"])).status_code == 200
    missing = client.post("/v1/accounts/999999/keys/revoke", json={}, headers=operator)
    assert missing.status_code == 404
