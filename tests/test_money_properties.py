"""Random sequences of money operations keep the ledger sound.

A hypothesis state machine drives the real app (Flask test client and the services the
background jobs call) through funding, launching jobs with random budgets, leasing,
submitting, expiring, skipping, banning, deciding, cancelling and payout runs; after every
step the ledger must pass `ledger_audit.check` and the invariants restated here independently.

Examples share one database per test: every example makes fresh accounts and jobs, and the
invariants are checked over the whole ledger, so they hold across examples too.

What each step draws never depends on what earlier steps returned: leases mix golden items in
at random (`SystemRandom`), so the number of items in a task, and whether there is a task at
all, differ between runs of the same example. Hypothesis replays examples and refuses one whose
draws change shape (`FlakyStrategyDefinition`), so rules draw fixed-shape values (an index taken
modulo the list, a full task's worth of labels) and do nothing when there is nothing to act on,
instead of preconditions on lists the outcomes fill.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, update

from marketplace.db import get_engine, session_scope
from marketplace.models import Assignment, LedgerBalance, LedgerEntry, LedgerTxn, PayoutRun, utcnow
from marketplace.pool.release import reclaim_expired
from marketplace.services import acceptance, aggregating, ledger, ledger_audit, payouts
from tests.conftest import LABELS, bearer, job_body, new_key

Headers = dict[str, str]
_names = itertools.count()
MAX_TASK_ITEMS = 4  # the largest items_per_task `launch` draws
pick = st.integers(0, 10_000)  # an index into a list whose length depends on outcomes
task_labels = st.lists(st.sampled_from(LABELS), min_size=MAX_TASK_ITEMS, max_size=MAX_TASK_ITEMS)


def _nth(items: list[Any], index: int) -> Any:
    return items[index % len(items)]


def _global_problems(app: Flask) -> list[str]:
    """The invariants of the brief, recomputed here rather than trusted to `check`."""
    problems: list[str] = []
    with session_scope(get_engine(app)) as session:
        problems += ledger_audit.check(session)
        total = session.execute(select(func.coalesce(func.sum(LedgerEntry.amount), 0))).scalar_one()
        if total != 0:
            problems.append(f"all entries sum to {total}")
        negative = session.execute(
            select(LedgerBalance.account, LedgerBalance.balance).where(
                LedgerBalance.balance < 0, ~LedgerBalance.account.like("external:%")
            )
        ).all()
        problems += [f"{a} below zero: {b}" for a, b in negative]
        work = dict(
            session.execute(
                select(LedgerTxn.assignment_id, func.count())
                .where(LedgerTxn.kind == "work")
                .group_by(LedgerTxn.assignment_id)
            ).all()
        )
        for task in session.execute(select(Assignment).where(Assignment.decision.is_not(None))).scalars():
            paid = work.get(task.id, 0)
            if task.decision == "accepted" and (task.paid_cents or 0) > 0 and paid != 1:
                problems.append(f"accepted assignment {task.id} has {paid} work movements")
            if task.decision != "accepted" and paid:
                problems.append(f"rejected assignment {task.id} has {paid} work movements")
            if task.decision == "accepted" and task.paid_cents is None:
                problems.append(f"accepted assignment {task.id} records no pay")
        twice = session.execute(
            select(LedgerTxn.run_id, LedgerEntry.account, func.count())
            .join(LedgerEntry, LedgerEntry.txn_id == LedgerTxn.id)
            .where(LedgerTxn.kind == "payout", LedgerEntry.account.like("worker:%"))
            .group_by(LedgerTxn.run_id, LedgerEntry.account)
            .having(func.count() > 1)
        ).all()
        problems += [f"run {r} paid {a} {n} times" for r, a, n in twice]
    return problems


def _machine(app: Flask) -> type[RuleBasedStateMachine]:
    client = app.test_client()
    engine = get_engine(app)
    operator = bearer(new_key(app, "operator", "op"))
    operator_id = client.get("/v1/me", headers=operator).get_json()["id"]

    class Money(RuleBasedStateMachine):
        @initialize(
            n_workers=st.integers(2, 4),
            funds=st.integers(0, 8000),
            first_budget=st.integers(20, 3000),  # a task costs at most 4 items x 2 cents
            per_task=st.integers(1, MAX_TASK_ITEMS),
            overlap=st.integers(1, 3),
        )
        def accounts(self, n_workers: int, funds: int, first_budget: int, per_task: int, overlap: int) -> None:
            """Fresh accounts, and one funded job so that every example has work to lease."""
            self.requester = bearer(new_key(app, "requester", f"req{next(_names)}"))
            self.requester_id = client.get("/v1/me", headers=self.requester).get_json()["id"]
            self.workers: list[tuple[int, Headers]] = []
            for _ in range(n_workers):
                headers = bearer(new_key(app, "worker", f"w{next(_names)}"))
                self.workers.append((client.get("/v1/me", headers=headers).get_json()["id"], headers))
            self.jobs: list[int] = []
            self.tasks: list[dict[str, Any]] = []  # leased tasks: id, job, worker index, items
            self.banned: set[int] = set()
            self.fund(funds + first_budget)
            self.launch(first_budget, 8, per_task, None, None, overlap)
            assert self.jobs, "the first job did not launch"

        def _balance(self, account: str) -> int:
            with session_scope(engine) as session:
                return ledger.balance(session, account)

        def _entries(self) -> int:
            with session_scope(engine) as session:
                return int(session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one())

        @rule(amount=st.integers(1, 3000))
        def fund(self, amount: int) -> None:
            before = self._balance(ledger.requester_account(self.requester_id))
            response = client.post(
                f"/v1/accounts/{self.requester_id}/funds",
                json={"amount_cents": amount, "currency": "USD"},
                headers=operator,
            )
            assert response.status_code == 201, response.get_json()
            assert response.get_json()["balance_cents"] == before + amount
            assert self._balance(ledger.requester_account(self.requester_id)) == before + amount

        @rule(
            budget=st.integers(0, 6000),
            items=st.integers(1, 8),
            per_task=st.integers(1, MAX_TASK_ITEMS),
            reject_golden=st.sampled_from([None, 1, 2]),
            agreement=st.sampled_from([None, 0.5, 0.8]),
            overlap=st.integers(1, 3),
        )
        def launch(
            self,
            budget: int,
            items: int,
            per_task: int,
            reject_golden: int | None,
            agreement: float | None,
            overlap: int,
        ) -> None:
            rules = {k: v for k, v in (("reject_failed_golden", reject_golden), ("min_agreement", agreement)) if v}
            body = job_body(budget_cents=budget, items_per_task=per_task, overlap=overlap, acceptance=rules)
            created = client.post("/v1/jobs", json=body, headers=self.requester)
            assert created.status_code == 201, created.get_json()
            job = created.get_json()
            payload = [{"data": {"url": f"i{i}.jpg", "w": 1, "h": 1}} for i in range(items)]
            payload += [{"data": {"url": f"g{i}.jpg", "w": 1, "h": 1}, "answer": "cat"} for i in range(2)]
            assert client.post(f"/v1/jobs/{job['id']}/items", json=payload, headers=self.requester).status_code == 201
            funds = self._balance(ledger.requester_account(self.requester_id))
            written = self._entries()
            launched = client.post(f"/v1/jobs/{job['id']}/launch", headers=self.requester)
            if budget > funds:
                assert 400 <= launched.status_code < 500, launched.get_json()
                assert "budget_cents" in launched.get_json()["errors"]["json"], launched.get_json()
            if launched.status_code != 200:
                assert 400 <= launched.status_code < 500, launched.get_json()
                assert "budget_cents" in launched.get_json()["errors"]["json"], launched.get_json()
                assert self._entries() == written, "a refused launch wrote ledger entries"
                assert self._balance(ledger.requester_account(self.requester_id)) == funds
                return
            assert self._balance(ledger.requester_account(self.requester_id)) == funds - budget
            assert self._balance(ledger.budget_account(job["id"])) == budget
            self.jobs.append(job["id"])

        @precondition(lambda self: self.jobs)
        @rule(job=pick, worker=pick)
        def lease(self, job: int, worker: int) -> None:
            self._lease(job, worker)

        def _lease(self, job: int, worker: int) -> None:
            job_id = _nth(self.jobs, job)
            index = worker % len(self.workers)
            worker_id, headers = self.workers[index]
            response = client.post("/v1/assignments", json={"job_id": job_id}, headers=headers)
            assert response.status_code in (201, 204, 403, 404, 409), (response.status_code, response.get_json())
            if worker_id in self.banned:
                assert response.status_code != 201, "a banned worker got work"
            if response.status_code == 201:
                task = response.get_json()
                self.tasks.append(
                    {"id": task["id"], "job": job_id, "worker": index, "items": [i["id"] for i in task["items"]]}
                )

        @precondition(lambda self: self.jobs)
        @rule(job=pick, worker=pick, labels=task_labels)
        def lease_and_submit(self, job: int, worker: int, labels: list[str]) -> None:
            before = len(self.tasks)
            self._lease(job, worker)
            if len(self.tasks) > before:
                self._submit(self.tasks[-1], labels)

        @rule(task=pick, labels=task_labels)
        def submit(self, task: int, labels: list[str]) -> None:
            if self.tasks:
                self._submit(_nth(self.tasks, task), labels)

        def _submit(self, task: dict[str, Any], labels: list[str]) -> None:
            assert len(task["items"]) <= MAX_TASK_ITEMS, task
            answers = [{"item_id": i, "label": label} for i, label in zip(task["items"], labels, strict=False)]
            _, headers = self.workers[task["worker"]]
            response = client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=headers)
            assert response.status_code in (200, 403, 404, 409, 410, 422), (response.status_code, response.get_json())
            self.tasks.remove(task)

        @rule(task=pick, late=st.integers(0, 600))
        def expire(self, task: int, late: int) -> None:
            if not self.tasks:
                return
            chosen = _nth(self.tasks, task)
            now = utcnow()
            with session_scope(engine) as session:
                session.execute(
                    update(Assignment)
                    .where(Assignment.id == chosen["id"], Assignment.state == "leased")
                    .values(expires_at=now - timedelta(seconds=61 + late))
                )
            with session_scope(engine) as session:
                reclaim_expired(session, chosen["job"], now)
            with session_scope(engine) as session:
                state = session.get(Assignment, chosen["id"]).state  # type: ignore[union-attr]
            assert state != "leased", "a lease past its deadline and grace was not reclaimed"
            self.tasks.remove(chosen)

        @rule(task=pick)
        def skip(self, task: int) -> None:
            if not self.tasks:
                return
            chosen = _nth(self.tasks, task)
            _, headers = self.workers[chosen["worker"]]
            response = client.post(f"/v1/assignments/{chosen['id']}/skip", headers=headers)
            assert response.status_code in (200, 403, 404, 409, 410), (response.status_code, response.get_json())
            self.tasks.remove(chosen)

        @rule(worker=pick, exclude=st.booleans())
        def ban(self, worker: int, exclude: bool) -> None:
            worker_id, _ = _nth(self.workers, worker)
            response = client.post(
                f"/v1/workers/{worker_id}/ban", json={"reason": "spam", "exclude_answers": exclude}, headers=operator
            )
            if worker_id in self.banned:
                assert response.status_code == 409, response.get_json()
            else:
                assert response.status_code == 200, response.get_json()
                self.banned.add(worker_id)
            with session_scope(engine) as session:
                still_open = session.execute(
                    select(func.count()).where(Assignment.worker_id == worker_id, Assignment.state == "leased")
                ).scalar_one()
            assert still_open == 0, "a banned worker kept an open lease"

        @precondition(lambda self: self.jobs)
        @rule(job=pick, aggregate=st.booleans(), later=st.booleans())
        def decide(self, job: int, aggregate: bool, later: bool) -> None:
            self._decide(_nth(self.jobs, job), aggregate, later)

        def _decide(self, job_id: int, aggregate: bool, later: bool) -> None:
            if aggregate:
                with session_scope(engine) as session:
                    aggregating.aggregate_job(session, job_id)
            now = utcnow() + timedelta(days=30) if later else utcnow()
            with session_scope(engine) as session:
                acceptance.decide_job(session, job_id, acceptance.Limits(), now)
            if later:  # past any auto-accept delay: nothing submitted is left undecided
                with session_scope(engine) as session:
                    waiting = session.execute(
                        select(func.count()).where(
                            Assignment.job_id == job_id, Assignment.state == "submitted", Assignment.decision.is_(None)
                        )
                    ).scalar_one()
                assert waiting == 0

        @precondition(lambda self: self.jobs)
        @rule(job=pick)
        def cancel(self, job: int) -> None:
            job_id = _nth(self.jobs, job)
            response = client.post(f"/v1/jobs/{job_id}/cancel", headers=self.requester)
            assert response.status_code in (200, 409), response.get_json()
            if response.status_code == 200:
                with session_scope(engine) as session:
                    held = ledger.balance(session, ledger.holds_account(job_id))
                    left = ledger.balance(session, ledger.budget_account(job_id))
                assert left == 0 or held > 0, "a cancelled job with nothing held kept budget"

        @rule()
        def payout(self) -> None:
            with session_scope(engine) as session:
                owed = dict(
                    session.execute(
                        select(LedgerBalance.account, LedgerBalance.balance).where(
                            LedgerBalance.account.like("worker:%"), LedgerBalance.balance > 0
                        )
                    ).all()
                )
                run, created = payouts.start_run(session, operator_id, "USD", None)
                run_id = run.id
            assert created, "a run was left open"
            done = payouts.execute_run(engine, run_id)
            assert done["state"] == "done"
            assert done["total_cents"] == sum(owed.values())
            assert done["workers"] == len(owed)
            with session_scope(engine) as session:
                left = session.execute(
                    select(func.count()).where(LedgerBalance.account.like("worker:%"), LedgerBalance.balance != 0)
                ).scalar_one()
                paid = dict(
                    session.execute(
                        select(LedgerEntry.account, -LedgerEntry.amount)
                        .join(LedgerTxn, LedgerTxn.id == LedgerEntry.txn_id)
                        .where(LedgerTxn.run_id == run_id, LedgerEntry.account.like("worker:%"))
                    ).all()
                )
                assert session.get(PayoutRun, run_id).open is None  # type: ignore[union-attr]
            assert left == 0
            assert paid == owed

        def teardown(self) -> None:
            """Settle everything the example left open, then pay out: the end state is checked too."""
            for job_id in getattr(self, "jobs", []):
                with session_scope(engine) as session:
                    acceptance.decide_job(session, job_id, acceptance.Limits(), utcnow() + timedelta(days=30))
            self.payout()
            assert _global_problems(app) == []

        @invariant()
        def ledger_sound(self) -> None:
            assert _global_problems(app) == []

    return Money


def test_random_money_operations_keep_the_ledger_sound_postgres(app: Flask) -> None:
    run_state_machine_as_test(
        _machine(app),
        settings=settings(
            max_examples=20, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
    assert _global_problems(app) == []
