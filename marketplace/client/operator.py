"""Operators' calls: accounts and funds, bans, quality rules, payout runs, the audit log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from marketplace.client.errors import WaitTimeout
from marketplace.client.transport import Transport, new_idempotency_key

AUDIT_PAGE = 500


class OperatorCalls:
    _http: Transport

    def create_account(self, role: str, name: str) -> dict[str, Any]:
        """A new account; its `key` is in this answer only."""
        body = {"role": role, "name": name}
        return self._http.request("POST", "/v1/accounts", json=body).json()  # type: ignore[no-any-return]

    def fund(
        self, account_id: int, amount_cents: int, currency: str = "USD", *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Credit a requester; the `Idempotency-Key` (generated when not given) credits once however often sent."""
        return self._http.request(  # type: ignore[no-any-return]
            "POST",
            f"/v1/accounts/{account_id}/funds",
            json={"amount_cents": amount_cents, "currency": currency},
            headers={"Idempotency-Key": idempotency_key or new_idempotency_key()},
        ).json()

    def worker(self, worker_id: int) -> dict[str, Any]:
        return self._http.request("GET", f"/v1/workers/{worker_id}").json()  # type: ignore[no-any-return]

    def ban(
        self,
        worker_id: int,
        reason: str,
        *,
        exclude_answers: bool = False,
        scope: str = "everywhere",
        job_id: int | None = None,
        requester_id: int | None = None,
        duration_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Ban a worker (everywhere, from a job or from a requester's jobs, for good or for a while)."""
        body: dict[str, Any] = {"reason": reason, "exclude_answers": exclude_answers, "scope": scope}
        optional = {"job_id": job_id, "requester_id": requester_id, "duration_seconds": duration_seconds}
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._http.request("POST", f"/v1/workers/{worker_id}/ban", json=body).json()  # type: ignore[no-any-return]

    def unban(self, worker_id: int, reason: str = "") -> dict[str, Any]:
        return self._http.request(  # type: ignore[no-any-return]
            "DELETE", f"/v1/workers/{worker_id}/ban", json={"reason": reason}
        ).json()

    def add_rule(self, condition: dict[str, Any], action: dict[str, Any], job_id: int | None = None) -> dict[str, Any]:
        """A quality rule; without `job_id` a global one (operators only)."""
        body: dict[str, Any] = {"condition": condition, "action": action}
        if job_id is not None:
            body["job_id"] = job_id
        return self._http.request("POST", "/v1/rules", json=body).json()  # type: ignore[no-any-return]

    def rules(self, job_id: int | None = None) -> list[dict[str, Any]]:
        params = {"job_id": job_id} if job_id is not None else None
        return self._http.request("GET", "/v1/rules", params=params).json()  # type: ignore[no-any-return]

    def delete_rule(self, rule_id: int) -> None:
        self._http.request("DELETE", f"/v1/rules/{rule_id}")

    def start_payout_run(self, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Start paying every worker its balance (or get the run already open); `Idempotency-Key` always sent."""
        return self._http.request(  # type: ignore[no-any-return]
            "POST", "/v1/payouts/runs", headers={"Idempotency-Key": idempotency_key or new_idempotency_key()}
        ).json()

    def payout_run(self, run_id: int) -> dict[str, Any]:
        return self._http.request("GET", f"/v1/payouts/runs/{run_id}").json()  # type: ignore[no-any-return]

    def wait_payout_run(
        self, run_id: int, *, poll_seconds: float = 1.0, timeout: float | None = None
    ) -> dict[str, Any]:
        """Block until the run is done (it runs in the background, on an RQ worker)."""
        started = time.monotonic()
        while (run := self.payout_run(run_id))["state"] != "done":
            if timeout is not None and time.monotonic() - started > timeout:
                raise WaitTimeout(f"payout run {run_id} is {run['state']} after {timeout:g} s", run)
            time.sleep(poll_seconds)
        return run

    def payout_file(self, run_id: int, format: str, path: str | Path) -> Path:  # noqa: A002 - the API's name
        """The run's file for a payment provider (`csv` or `json`)."""
        return self._http.download(f"/v1/payouts/runs/{run_id}/file", Path(path), {"format": format})

    def audit(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """Audit events (bans, unbans, rule firings, qualifications), oldest first, from `after`."""
        while True:
            page = self._http.request("GET", "/v1/audit", params={"after": after, "limit": AUDIT_PAGE}).json()
            yield from page
            if len(page) < AUDIT_PAGE:
                return
            after = page[-1]["id"]

    def ledger_check(self) -> dict[str, Any]:
        return self._http.request("GET", "/v1/ledger/check").json()  # type: ignore[no-any-return]
