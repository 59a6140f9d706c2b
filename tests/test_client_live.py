"""The Python client against a real server (`marketplace serve` on PostgreSQL): a requester's
whole loop, a crowd of client workers, an operator's calls, and what a user sees on stderr."""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from marketplace.client import Client, Conflict, Forbidden, LeaseExpired, NotFound, UploadError
from marketplace.db import make_engine
from marketplace.models import Item
from tests.live import LiveServer, live_fixture  # noqa: F401 - the `live` fixture

LABELS = ["cat", "dog"]


def job_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "title": "cats or dogs",
        "instructions": "Pick the animal in the picture.",
        "annotation": {"type": "classification", "labels": LABELS},
        "overlap": 2,
        "golden_ratio": 0.0,
        "items_per_task": 5,
        "reward_cents": 1,
        "budget_cents": 10_000,
        "aggregation": "majority_vote",
    }
    spec.update(overrides)
    return spec


def requester(live: LiveServer, **options: Any) -> Client:
    client = Client(live.url, live.key("requester", "req"), **options)
    live.fund(client.me()["id"], 100_000)
    return client


def write_jsonl(path: Path, count: int, bad_at: int | None = None) -> Path:
    with path.open("w") as out:
        for n in range(count):
            item: dict[str, Any] = {"data": {"image_url": f"https://example.org/{n}.jpg", "n": n}}
            if n == bad_at:
                item["answer"] = "horse"  # not one of the job's labels
            out.write(json.dumps(item) + "\n")
    return path


def test_a_requester_uploads_launches_waits_and_downloads(
    live: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boss = requester(live, progress=True)
    job = boss.create_job(job_spec())
    upload = boss.add_items(job["id"], write_jsonl(tmp_path / "items.jsonl", 30), batch_size=7)
    assert (upload.added, upload.golden, upload.batches) == (30, 0, 5)
    bar = capsys.readouterr().err
    assert f"job {job['id']} items" in bar and "30/30" in bar and "100%" in bar
    assert boss.launch(job["id"])["state"] == "running"

    waited: dict[str, Any] = {}
    watcher = threading.Thread(
        target=lambda: waited.update(boss.wait(job["id"], poll_seconds=0.2, timeout=120)), daemon=True
    )
    watcher.start()
    crowd = [Client(live.url, live.key("worker", f"w{n}")) for n in range(2)]
    answered: dict[int, str] = {}
    for worker in crowd:
        for task in worker.tasks(job["id"]):
            assert 590 < task.seconds_left() <= 600
            labels = {item["id"]: LABELS[item["data"]["n"] % 2] for item in task.items}
            assert task.submit(labels)["state"] == "submitted"
            answered.update({item["data"]["n"]: LABELS[item["data"]["n"] % 2] for item in task.items})
    assert len(answered) == 30
    live.run_background_jobs()  # the final aggregation
    watcher.join(timeout=120)
    assert waited["state"] == "completed"
    assert waited["progress"]["answers"] == 60 and waited["progress"]["last_aggregation"]["answers_used"] == 60
    bar = capsys.readouterr().err
    assert f"job {job['id']}" in bar and "60/60" in bar

    rows = list(boss.results(job["id"], page_size=8))
    assert len(rows) == 30 and all(r["label"] in LABELS and r["answers"] == 2 for r in rows)
    frame = boss.results_frame(job["id"])
    assert len(frame) == 30 and set(frame["label"]) == set(LABELS)
    assert sorted(frame["item_id"]) == sorted(r["item_id"] for r in rows)

    as_csv = boss.export(job["id"], "csv", tmp_path / "results.csv")
    with as_csv.open() as lines:
        assert len(list(csv.DictReader(lines))) == 30
    as_jsonl = boss.export(job["id"], "jsonl", tmp_path / "results.jsonl")
    assert [json.loads(line) for line in as_jsonl.read_text().splitlines()] == rows
    as_json = boss.export(job["id"], "json", tmp_path / "results.json")
    assert json.loads(as_json.read_text()) == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.jsonl", "results.csv", "results.json", "results.jsonl"]


def test_an_upload_resumes_from_the_item_the_error_names(live: LiveServer, tmp_path: Path) -> None:
    boss = requester(live)
    job = boss.create_job(job_spec())
    source = write_jsonl(tmp_path / "items.jsonl", 50, bad_at=23)
    with pytest.raises(UploadError) as failed:
        boss.add_items(job["id"], source, batch_size=10)
    assert failed.value.start == 20 and set(failed.value.item_errors) == {23}
    assert "item 23" in str(failed.value) and "answer" in str(failed.value)
    assert boss.job(job["id"])["progress"]["items"] == 20  # the failed batch stored nothing
    write_jsonl(source, 50)  # fixed
    assert boss.add_items(job["id"], source, batch_size=10, start=failed.value.start).added == 30
    engine = make_engine(live.database_url)
    with engine.connect() as db:
        stored = sorted(d["n"] for d in db.execute(select(Item.data).where(Item.job_id == job["id"])).scalars())
    engine.dispose()
    assert stored == list(range(50))  # each item once


def test_items_from_a_csv_file_keep_numbers_as_numbers(live: LiveServer, tmp_path: Path) -> None:
    boss = requester(live)
    job = boss.create_job(job_spec())
    source = tmp_path / "items.csv"
    source.write_text(
        "image_url,width,height,answer\nhttps://example.org/a.jpg,640,480,\nhttps://example.org/b.jpg,32,24,dog\n"
    )
    upload = boss.add_items(job["id"], source)
    assert (upload.added, upload.golden) == (2, 1)
    engine = make_engine(live.database_url)
    with engine.connect() as db:
        rows = db.execute(select(Item.data, Item.answer).where(Item.job_id == job["id"]).order_by(Item.id)).all()
    engine.dispose()
    assert sorted((r.data["width"], r.answer) for r in rows) == [(32, "dog"), (640, None)]


def test_a_worker_loop_respects_the_lease_and_gives_back_what_it_leaves(live: LiveServer) -> None:
    boss = requester(live)
    job = boss.create_job(job_spec(lease_seconds=60, overlap=1))
    boss.add_items(job["id"], [{"data": {"n": n}} for n in range(10)])
    boss.launch(job["id"])
    worker = Client(live.url, live.key("worker", "w"))
    tasks = worker.tasks(job["id"])
    first = next(tasks)
    assert 55 < first.seconds_left() <= 60  # from the server's clock: expires_at - Date
    second = next(tasks)  # moving on gives the first one back
    assert worker.assignment(first.id)["state"] == "skipped"
    second._deadline = time.monotonic() - 1  # as if the lease had run out
    with pytest.raises(LeaseExpired):
        second.submit({item["id"]: "cat" for item in second.items})
    assert worker.assignment(second.id)["state"] == "leased"  # nothing was sent
    tasks.close()  # leaving the loop gives back the task in hand
    assert worker.assignment(second.id)["state"] == "skipped"
    with pytest.raises(NotFound):
        Client(live.url, live.key("worker", "other")).assignment(first.id)  # another worker's task


def test_tenants_are_walls_through_the_client(live: LiveServer) -> None:
    mine, theirs = requester(live), requester(live)
    job = mine.create_job(job_spec())
    with pytest.raises(NotFound):
        theirs.job(job["id"])
    with pytest.raises(UploadError) as refused:
        theirs.add_items(job["id"], [{"data": {}}])
    assert isinstance(refused.value.cause, NotFound) and refused.value.start == 0
    with pytest.raises(NotFound):
        list(theirs.results(job["id"]))


def test_an_operator_bans_sets_rules_and_pays_out(live: LiveServer, tmp_path: Path) -> None:
    operator = Client(live.url, live.key("operator", "ops"))
    made = operator.create_account("requester", "acme")
    assert operator.fund(made["id"], 5_000, idempotency_key="wire-1")["balance_cents"] == 5_000
    assert operator.fund(made["id"], 5_000, idempotency_key="wire-1")["balance_cents"] == 5_000  # credited once
    boss = Client(live.url, made["key"])
    job = boss.create_job(job_spec(overlap=1, budget_cents=1_000))
    boss.add_items(job["id"], [{"data": {"n": n}} for n in range(10)])
    boss.launch(job["id"])

    rule = operator.add_rule({"type": "golden_accuracy_below", "threshold": 0.5}, {"type": "flag"}, job_id=job["id"])
    assert rule["id"] in [r["id"] for r in operator.rules(job["id"])]
    operator.delete_rule(rule["id"])
    assert not [r for r in operator.rules(job["id"]) if r["id"] == rule["id"] and r["enabled"]]

    worker_key = live.key("worker", "w")
    worker = Client(live.url, worker_key)
    worker_id = worker.me()["id"]
    assert operator.ban(worker_id, "testing")["status"] == "banned"
    with pytest.raises(Forbidden):
        worker.lease(job["id"])
    operator.unban(worker_id, "done testing")
    for task in worker.tasks(job["id"]):
        task.submit({item["id"]: "cat" for item in task.items})
    boss.tune_job(job["id"], acceptance={"auto_accept_seconds": 0})
    live.run_background_jobs()  # aggregation and acceptance: the work is paid
    earned = worker.me()["balance_cents"]
    assert earned == 10

    run = operator.start_payout_run(idempotency_key="payday-1")
    assert operator.start_payout_run(idempotency_key="payday-1")["id"] == run["id"]
    live.run_background_jobs()
    done = operator.wait_payout_run(run["id"], poll_seconds=0.2, timeout=30)
    assert done["state"] == "done"
    assert [line["amount_cents"] for line in done["lines"] if line["worker_id"] == worker_id] == [earned]
    paid = operator.payout_file(run["id"], "csv", tmp_path / "payout.csv")
    assert str(worker_id) in paid.read_text()
    assert worker.me()["paid_out_cents"] == earned
    assert operator.ledger_check()["ok"] is True
    assert any(event["action"] == "ban" for event in operator.audit())
    with pytest.raises(Conflict):
        boss.launch(job["id"])  # already running
