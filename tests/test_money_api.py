"""Money through the API: funds, budgets held at launch, holds per lease, decisions, spend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError

from marketplace.db import get_engine, session_scope
from marketplace.models import Assignment, LedgerEntry, utcnow
from marketplace.pool.release import reclaim_expired
from marketplace.services import acceptance, aggregating, ledger, ledger_audit, payouts
from tests.conftest import bearer, fund, job_body, new_key, post_job
from tests.test_api_bad_input import assert_error

Headers = dict[str, str]


def _entries(app: Flask) -> int:
    with session_scope(get_engine(app)) as session:
        return int(session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one())


def _check(app: Flask) -> list[str]:
    with session_scope(get_engine(app)) as session:
        return ledger_audit.check(session)


def _balance(app: Flask, account: str) -> int:
    with session_scope(get_engine(app)) as session:
        return ledger.balance(session, account)


def _me(client: FlaskClient, headers: Headers) -> dict[str, Any]:
    return client.get("/v1/me", headers=headers).get_json()  # type: ignore[no-any-return]


def test_funds_are_credited_once_per_key_and_bad_input_writes_nothing(
    app: Flask, client: FlaskClient, requester: Headers, operator: Headers
) -> None:
    requester_id = _me(client, requester)["id"]
    url = f"/v1/accounts/{requester_id}/funds"
    keyed = {**operator, "Idempotency-Key": "wire-1"}
    first = client.post(url, json={"amount_cents": 1000, "currency": "USD"}, headers=keyed)
    assert first.status_code == 201 and first.get_json()["balance_cents"] == 1000
    retry = client.post(url, json={"amount_cents": 1000, "currency": "USD"}, headers=keyed)
    assert retry.get_json() == first.get_json()
    assert _me(client, requester)["balance_cents"] == 1000
    written = _entries(app)
    for body, field in (
        ({"amount_cents": -5, "currency": "USD"}, "amount_cents"),
        ({"amount_cents": 0, "currency": "USD"}, "amount_cents"),
        ({"amount_cents": 5, "currency": "EUR"}, "currency"),
        ({"amount_cents": 5.5, "currency": "USD"}, "amount_cents"),
        ({"amount_cents": "5", "currency": "USD"}, "amount_cents"),
        ({"currency": "USD"}, "amount_cents"),
    ):
        response = client.post(url, json=body, headers=operator)
        assert_error(response, 422)
        assert field in response.get_json()["errors"]["json"], body
    assert_error(client.post(url, json={"amount_cents": 5, "currency": "USD"}, headers=requester), 403)
    worker_id = _me(client, bearer(new_key(app, "worker")))["id"]
    assert_error(
        client.post(f"/v1/accounts/{worker_id}/funds", json={"amount_cents": 5, "currency": "USD"}, headers=operator),
        404,
    )
    assert _entries(app) == written
    assert _check(app) == []


def test_launch_holds_the_budget_and_a_budget_above_the_funds_is_refused(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = post_job(client, requester, launch=False, budget_cents=5000)
    fund(client, requester, 3000)
    written = _entries(app)
    refused = client.post(f"/v1/jobs/{job['id']}/launch", headers=requester)
    assert_error(refused, 422)
    assert "budget_cents" in refused.get_json()["errors"]["json"]
    assert _entries(app) == written
    assert client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["state"] == "draft"
    fund(client, requester, 2000)
    launched = client.post(f"/v1/jobs/{job['id']}/launch", headers=requester)
    assert launched.status_code == 200
    assert _me(client, requester)["balance_cents"] == 0
    assert launched.get_json()["progress"]["budget"]["available_cents"] == 5000
    # Raise and lower the budget on the running job: a level, so repeating it moves nothing.
    patch = client.patch(f"/v1/jobs/{job['id']}", json={"budget_cents": 4000}, headers=requester)
    assert patch.status_code == 200 and _me(client, requester)["balance_cents"] == 1000
    client.patch(f"/v1/jobs/{job['id']}", json={"budget_cents": 4000}, headers=requester)
    assert _me(client, requester)["balance_cents"] == 1000
    too_much = client.patch(f"/v1/jobs/{job['id']}", json={"budget_cents": 9000}, headers=requester)
    assert_error(too_much, 422)
    assert "budget_cents" in too_much.get_json()["errors"]["json"]
    assert _check(app) == []


def test_a_lease_holds_its_worst_case_and_skip_expiry_and_cancel_give_it_back(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = post_job(client, requester, items=30, golden=5, budget_cents=1000)  # 2 cents/item, 5 items/task
    worker = bearer(new_key(app, "worker"))
    budget, holds = ledger.budget_account(job["id"]), ledger.holds_account(job["id"])
    task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).get_json()
    assert (_balance(app, budget), _balance(app, holds)) == (990, 10)
    client.post(f"/v1/assignments/{task['id']}/skip", headers=worker)
    assert (_balance(app, budget), _balance(app, holds)) == (1000, 0)
    task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).get_json()
    with session_scope(get_engine(app)) as session:
        session.execute(update(Assignment).where(Assignment.id == task["id"]).values(expires_at=utcnow()))
    with session_scope(get_engine(app)) as session:
        assert reclaim_expired(session, job["id"], utcnow() + timedelta(minutes=5)) == 1
    assert (_balance(app, budget), _balance(app, holds)) == (1000, 0)
    open_task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker).get_json()
    assert _balance(app, holds) == 10
    before = _me(client, requester)["balance_cents"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=requester).status_code == 200
    assert (_balance(app, budget), _balance(app, holds)) == (0, 0)
    assert _me(client, requester)["balance_cents"] == before + 1000
    late = client.post(f"/v1/assignments/{open_task['id']}/submit", json={"answers": []}, headers=worker)
    assert late.status_code in (409, 422)
    assert _check(app) == []


def test_a_budget_that_cannot_pay_a_task_stops_issuing_and_says_so(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = post_job(client, requester, items=30, golden=5, budget_cents=15)  # one task of 5 at 2 cents, and a bit
    worker, other = bearer(new_key(app, "worker")), bearer(new_key(app, "worker"))
    first = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)
    assert first.status_code == 201
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=other).status_code == 204
    progress = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["progress"]
    assert progress["budget"]["exhausted"] is True and "raise budget_cents" in progress["budget"]["note"]
    fund(client, requester, 100)
    client.patch(f"/v1/jobs/{job['id']}", json={"budget_cents": 115}, headers=requester)
    assert client.post("/v1/assignments", json={"job_id": job["id"]}, headers=other).status_code == 201
    assert _check(app) == []


def _submit_all(client: FlaskClient, worker: Headers, job_id: int, label_of: Any, limit: int = 50) -> int:
    done = 0
    for _ in range(limit):
        lease = client.post("/v1/assignments", json={"job_id": job_id}, headers=worker)
        if lease.status_code != 201:
            break
        task = lease.get_json()
        answers = [{"item_id": i["id"], "label": label_of(i)} for i in task["items"]]
        assert (
            client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker).status_code
            == 200
        )
        done += 1
    return done


def test_decisions_pay_accepted_work_with_bonus_and_reject_with_reasons(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = post_job(
        client,
        requester,
        items=20,
        golden=20,
        overlap=2,
        golden_ratio=0.4,
        bonus={"golden_accuracy_above": 0.6, "cents_per_item": 1},
        acceptance={"reject_failed_golden": 1},
    )
    good, bad = bearer(new_key(app, "worker", "good")), bearer(new_key(app, "worker", "bad"))
    assert _submit_all(client, good, job["id"], lambda item: "cat") > 0  # every golden answer is 'cat'
    assert _submit_all(client, bad, job["id"], lambda item: "bird") > 0
    with session_scope(get_engine(app)) as session:
        aggregating.aggregate_job(session, job["id"])
    with session_scope(get_engine(app)) as session:
        counts = acceptance.decide_job(session, job["id"], acceptance.Limits())
    assert counts["accepted"] > 0 and counts["rejected"] > 0
    good_me, bad_me = _me(client, good), _me(client, bad)
    assert {d["decision"] for d in good_me["decisions"]} == {"accepted"}
    paid = [d["paid_cents"] for d in good_me["decisions"]]
    assert all(p > 0 and p % 3 == 0 for p in paid)  # every item 2 cents + 1 cent bonus (golden ones too)
    assert paid.count(15) >= len(paid) - 1  # full tasks of 5 items; the last may be short
    assert good_me["balance_cents"] == sum(paid)
    bad_decisions = bad_me["decisions"]
    assert {d["decision"] for d in bad_decisions} == {"rejected"}
    # the reason says why without counting golden items (a task's golden share must not show)
    assert {d["reason"] for d in bad_decisions} == {acceptance.FAILED_CHECKS}
    assert not any(char.isdigit() or "golden" in d["reason"] for d in bad_decisions for char in d["reason"])
    assert bad_me["balance_cents"] == 0
    one = bad_decisions[0]["assignment_id"]
    seen = client.get(f"/v1/assignments/{one}", headers=bad).get_json()
    assert seen["decision"] == "rejected" and seen["paid_cents"] is None
    spend = client.get(f"/v1/jobs/{job['id']}/spend", headers=requester).get_json()
    assert (spend["work_cents"], spend["bonus_cents"]) == (2 * sum(paid) // 3, sum(paid) // 3)
    assert spend["held_cents"] == 0
    with session_scope(get_engine(app)) as session:  # deciding again moves nothing
        again = acceptance.decide_job(session, job["id"], acceptance.Limits())
    assert again == {"accepted": 0, "rejected": 0, "waiting": 0}
    assert _me(client, good)["balance_cents"] == good_me["balance_cents"]
    assert _check(app) == []


def test_undecided_work_is_auto_accepted_after_the_delay(app: Flask, client: FlaskClient, requester: Headers) -> None:
    job = post_job(client, requester, items=10, golden=2, acceptance={"auto_accept_seconds": 3600})
    worker = bearer(new_key(app, "worker"))
    assert _submit_all(client, worker, job["id"], lambda item: "dog") > 0
    with session_scope(get_engine(app)) as session:  # no aggregation yet: nothing decides
        assert acceptance.decide_overdue(session, acceptance.Limits())[job["id"]]["accepted"] == 0
    later = utcnow() + timedelta(hours=2)
    with session_scope(get_engine(app)) as session:
        decided = acceptance.decide_overdue(session, acceptance.Limits(), later)[job["id"]]
    assert decided["accepted"] > 0
    assert {d["reason"] for d in _me(client, worker)["decisions"]} == {"auto-accepted: not aggregated in time"}
    assert _check(app) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pricing": {"model": "per_object", "cents_per_object": 1}}, "max_objects"),
        ({"pricing": {"model": "per_item", "cents": -1}}, "cents"),
        ({"pricing": {"model": "tiered", "tiers": {"bbox": 5}}}, "pricing"),
        ({"pricing": {"model": "auction"}}, "model"),
        ({"pricing": {"model": "per_item", "cents": 2}, "reward_cents": 2}, "reward_cents"),
        ({"bonus": {"golden_accuracy_above": 1.5, "cents_per_item": 1}}, "golden_accuracy_above"),
        ({"acceptance": {"min_agreement": 0.95}}, "acceptance.min_agreement"),
        ({"acceptance": {"auto_accept_seconds": 60 * 24 * 3600}}, "acceptance.auto_accept_seconds"),
        ({"budget_cents": -1}, "budget_cents"),
    ],
)
def test_bad_money_settings_name_the_field(
    app: Flask, client: FlaskClient, requester: Headers, changes: dict[str, Any], field: str
) -> None:
    body = job_body(**changes)
    response = client.post("/v1/jobs", json=body, headers=requester)
    assert_error(response, 422)
    assert field.split(".")[-1] in str(response.get_json()["errors"]), response.get_json()
    assert _entries(app) == 0


def test_pricing_models_set_what_a_lease_holds(app: Flask, client: FlaskClient, requester: Headers) -> None:
    tiered = job_body(pricing={"model": "tiered", "tiers": {"classification": 3, "bbox": 9}})
    created = client.post("/v1/jobs", json=tiered, headers=requester).get_json()
    assert (created["reward_cents"], created["pricing"]["model"]) == (3, "tiered")
    per_object = job_body(
        pricing={"model": "per_object", "cents_per_object": 2, "max_objects": 4},
        bonus={"golden_accuracy_above": 0.9, "cents_per_item": 1},
    )
    job = post_job(client, requester, **{k: per_object[k] for k in ("pricing", "bonus")})
    worker = bearer(new_key(app, "worker"))
    client.post("/v1/assignments", json={"job_id": job["id"]}, headers=worker)
    assert _balance(app, ledger.holds_account(job["id"])) == 5 * (2 * 4 + 1)  # worst case: cap and bonus


def test_the_ledger_is_append_only(app: Flask, client: FlaskClient, requester: Headers) -> None:
    fund(client, requester, 100)
    for statement in ("UPDATE ledgerentry SET amount = amount + 1", "DELETE FROM ledgertxn"):
        with pytest.raises(DBAPIError, match="append-only"), session_scope(get_engine(app)) as session:
            session.execute(text(statement))
    assert _check(app) == []


def test_a_payout_run_pays_balances_once_and_writes_the_file(
    app: Flask, client: FlaskClient, requester: Headers, operator: Headers
) -> None:
    job = post_job(client, requester, items=10, golden=2)
    workers = [bearer(new_key(app, "worker", f"w{i}")) for i in range(2)]
    for worker in workers:
        assert _submit_all(client, worker, job["id"], lambda item: "cat") > 0
    later = utcnow() + timedelta(days=30)
    with session_scope(get_engine(app)) as session:
        acceptance.decide_overdue(session, acceptance.Limits(), later)
    owed = {_me(client, w)["id"]: _me(client, w)["balance_cents"] for w in workers}
    assert all(v > 0 for v in owed.values())
    keyed = {**operator, "Idempotency-Key": "run-1"}
    started = client.post("/v1/payouts/runs", headers=keyed)
    assert started.status_code == 201 and started.get_json()["state"] == "pending"
    run_id = started.get_json()["id"]
    assert client.post("/v1/payouts/runs", headers=keyed).get_json()["id"] == run_id
    assert client.post("/v1/payouts/runs", headers=operator).status_code == 200  # the open run, not a new one
    assert_error(client.post("/v1/payouts/runs", headers=requester), 403)
    for _ in range(2):  # run twice: the second pays nobody again
        summary = payouts.execute_run(get_engine(app), run_id)
    assert (summary["state"], summary["workers"], summary["total_cents"]) == ("done", 2, sum(owed.values()))
    for worker in workers:
        me = _me(client, worker)
        assert (me["balance_cents"], me["paid_out_cents"]) == (0, owed[me["id"]])
    csv_file = client.get(f"/v1/payouts/runs/{run_id}/file?format=csv", headers=operator)
    assert csv_file.mimetype == "text/csv"
    lines = csv_file.get_data(as_text=True).strip().splitlines()
    assert lines[0] == "worker_id,worker_name,amount_cents,currency,reference" and len(lines) == 3
    as_json = client.get(f"/v1/payouts/runs/{run_id}/file", headers=operator).get_json()
    assert {line["worker_id"]: line["amount_cents"] for line in as_json} == owed
    assert _check(app) == []
    second = client.post("/v1/payouts/runs", headers=operator)
    assert second.status_code == 201 and second.get_json()["id"] != run_id
    assert payouts.execute_run(get_engine(app), second.get_json()["id"])["workers"] == 0
