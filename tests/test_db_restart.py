"""PostgreSQL restarts (issue 11 item 14): pooled connections that the restart killed are
dropped before use, and while the server is away the API answers 503 with `Retry-After`, on the
hot path and through Flask alike, never 500; it comes back by itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from marketplace.db import close_quietly, dispose, make_engine
from tests.conftest import bearer, make_app, new_key, post_job
from tests.faults import OwnPostgres, recovered


@pytest.fixture
def own_app(own_postgres: OwnPostgres, redis: Redis) -> Iterator[Flask]:
    app = make_app(own_postgres.url())
    yield app
    dispose(app)


def _cycle(client: FlaskClient, worker: dict[str, str], job_id: int) -> tuple[Any, Any]:
    """A lease (the hot path) and its submit, plus a read through Flask; the three responses'
    statuses as (lease, submit, read)."""
    lease = client.post("/v1/assignments", json={"job_id": job_id}, headers=worker)
    if lease.status_code != 201:
        return lease, None
    task = lease.get_json()
    answers = [{"item_id": item["id"], "label": "cat"} for item in task["items"]]
    headers = {**worker, "Idempotency-Key": f"k{task['id']}"}
    return lease, client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers)


def test_a_restart_costs_no_request_and_an_outage_is_503_with_retry_after(
    own_app: Flask, own_postgres: OwnPostgres
) -> None:
    client = own_app.test_client()
    requester = bearer(new_key(own_app, "requester"))
    job = post_job(client, requester, items=40, golden=4, overlap=3)
    workers = [bearer(new_key(own_app, "worker", f"w{i}")) for i in range(3)]
    for worker in workers:  # every pool holds connections now
        lease, submit = _cycle(client, worker, job["id"])
        assert (lease.status_code, submit.status_code) == (201, 200)

    own_postgres.stop("fast")
    own_postgres.start()
    # Each pooled connection is dead: none may reach a client as an error.
    for worker in workers:
        lease, submit = _cycle(client, worker, job["id"])
        assert lease.status_code == 201, lease.get_json()
        assert submit.status_code == 200, submit.get_json()
        assert client.get(f"/v1/jobs/{job['id']}", headers=requester).status_code == 200

    down = own_postgres.stop("fast")
    for worker in workers:
        lease = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)
        read = client.get(f"/v1/jobs/{job['id']}", headers=requester)
        me = client.get("/v1/me", headers=bearer("mk_unknown"))  # an unknown key: its lookup needs the database
        for response in (lease, read, me):
            assert response.status_code == 503, (response.status_code, response.get_data(as_text=True))
            assert response.headers["Retry-After"] == "2"
            body = response.get_json()
            assert body["code"] == 503 and "retry" in body["message"]
    assert client.get("/readyz").status_code == 503
    assert time.monotonic() - down < 10  # refused at once, not after a hang

    up = own_postgres.start()
    outage = up - down
    first_ok = None
    for _ in range(50):
        lease, submit = _cycle(client, workers[0], job["id"])
        if lease.status_code in (201, 204):
            first_ok = time.monotonic() - up
            break
        assert lease.status_code == 503
        time.sleep(0.1)
    assert first_ok is not None
    assert submit is None or submit.status_code == 200
    recovered("postgres restarted (in-process API)", first_ok, outage_s=round(outage, 2))


def test_a_session_whose_server_went_away_closes_without_raising(database_url: str) -> None:
    """A request's session is closed at teardown, after its answer was chosen: when the server
    cut its connection meanwhile (a restart), closing must not raise (gunicorn would send an
    HTML 500 in place of the answer)."""
    engine = make_engine(database_url)
    try:
        for close in (close_quietly, Session.close):
            session = Session(engine)
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()  # a transaction is open
            with engine.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                admin.commit()
            time.sleep(0.2)
            if close is Session.close:
                with pytest.raises(OperationalError):  # what the teardown used to do
                    close(session)
            else:
                close(session)
        with Session(engine) as fresh:  # the pool gives a working connection after that
            assert fresh.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
