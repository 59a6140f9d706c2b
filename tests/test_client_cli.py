"""`marketplace client ...` and `marketplace work` run as a user runs them (subprocesses, stdin)
against a real server."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from marketplace.client import Client
from tests.live import LiveServer, live_fixture  # noqa: F401 - the `live` fixture

LABELS = ["positive", "negative", "neutral"]


def run(live: LiveServer, key: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MARKETPLACE_URL": live.url, "MARKETPLACE_KEY": key}
    command = [sys.executable, "-m", "marketplace", *args]
    return subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=120)


def text_job(live: LiveServer, tmp_path: Path, items: int, **overrides: object) -> tuple[str, int]:
    """A requester's key and a launched job of `items` text items made through the CLI."""
    key = live.key("requester", "req")
    live.fund(Client(live.url, key).me()["id"], 100_000)
    spec = {
        "title": "Sentiment",
        "instructions": "Is the sentence positive, negative or neutral?",
        "annotation": {"type": "classification", "labels": LABELS},
        "overlap": 1,
        "golden_ratio": 0.0,
        "items_per_task": 3,
        "reward_cents": 2,
        "budget_cents": 10_000,
        "aggregation": "majority_vote",
        **overrides,
    }
    (tmp_path / "job.json").write_text(json.dumps(spec))
    created = run(live, key, "client", "create-job", str(tmp_path / "job.json"))
    assert created.returncode == 0, created.stderr
    job_id = int(created.stdout.strip().splitlines()[-1])
    source = tmp_path / "items.jsonl"
    lines = (json.dumps({"data": {"text": f"sentence number {n}", "n": n}}) + "\n" for n in range(items))
    source.write_text("".join(lines))
    added = run(live, key, "client", "add-items", str(job_id), str(source), "--batch-size", "4", "--progress")
    assert added.returncode == 0, added.stderr
    assert f"added {items} items" in added.stdout and f"{items}/{items}" in added.stderr  # the bar
    launched = run(live, key, "client", "launch", str(job_id))
    assert launched.returncode == 0 and "running" in launched.stdout
    return key, job_id


def test_a_requester_runs_a_job_from_the_command_line(live: LiveServer, tmp_path: Path) -> None:
    key, job_id = text_job(live, tmp_path, 6)
    status = run(live, key, "client", "status", str(job_id))
    assert json.loads(status.stdout)["progress"]["answers_wanted"] == 6
    worker_key = live.key("worker", "w")
    worked = run(live, worker_key, "work", "--job", str(job_id), "--exit-when-idle", stdin="1\n2\n3\n1\n2\n3\n")
    assert worked.returncode == 0, worked.stderr
    live.run_background_jobs()
    watched = run(live, key, "client", "watch", str(job_id), "--interval", "0.2", "--timeout", "60", "--progress")
    assert watched.returncode == 0, watched.stderr
    assert "completed: 6 answers" in watched.stdout and "6/6" in watched.stderr
    for fmt in ("csv", "jsonl", "json"):
        out = tmp_path / f"results.{fmt}"
        got = run(live, key, "client", "results", str(job_id), "--format", fmt, "-o", str(out))
        assert got.returncode == 0, got.stderr
    with (tmp_path / "results.csv").open() as rows:
        assert sorted(r["label"] for r in csv.DictReader(rows)) == sorted(LABELS * 2)
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 6
    assert len(json.loads((tmp_path / "results.json").read_text())) == 6


def test_the_terminal_worker_stores_exactly_what_was_typed(live: LiveServer, tmp_path: Path) -> None:
    _, job_id = text_job(live, tmp_path, 6)
    worker_key = live.key("worker", "w")
    typed = ["2", "9", "3", "1", "x", "1", "2", "3"]  # 9 and x are not labels: asked again
    worked = run(live, worker_key, "work", "--job", str(job_id), "--exit-when-idle", stdin="\n".join(typed) + "\n")
    assert worked.returncode == 0, worked.stderr
    out = worked.stdout
    assert "Sentiment" in out and "Is the sentence positive" in out and "1) positive  2) negative  3) neutral" in out
    assert "'9' is not a number between 1 and 3" in out and "'x' is not" in out
    assert out.count("Submitted 3 answers.") == 2 and "No work now." in out
    shown = [int(n) for n in re.findall(r"sentence number (\d+)", out)]
    chosen = [LABELS[int(t) - 1] for t in typed if t in ("1", "2", "3")]
    assert sorted(shown) == list(range(6))
    stored = {data["n"]: label for data, label in live.answers_of(worker_key)}
    assert stored == dict(zip(shown, chosen, strict=True))


def test_the_terminal_worker_skips_and_quits(live: LiveServer, tmp_path: Path) -> None:
    _, job_id = text_job(live, tmp_path, 6)
    worker_key = live.key("worker", "w")
    worked = run(live, worker_key, "work", "--job", str(job_id), stdin="1\ns\n2\nq\n")
    assert worked.returncode == 0, worked.stderr
    assert "Task given back." in worked.stdout and "Bye." in worked.stdout
    assert live.answers_of(worker_key) == []  # a skipped or abandoned task sends nothing
    second_key = live.key("worker", "second")
    ended = run(live, second_key, "work", "--job", str(job_id), stdin="3\n")  # then the end of input
    assert ended.returncode == 0 and "Bye." in ended.stdout
    assert live.answers_of(second_key) == []
    taken = Client(live.url, live.key("worker", "third")).lease(job_id)
    assert taken is not None and len(taken.items) == 3  # what they left went back to the pool


def test_a_banned_worker_is_told_it_cannot_take_work(live: LiveServer, tmp_path: Path) -> None:
    worker_key = live.key("worker", "w")
    operator = Client(live.url, live.key("operator", "ops"))
    operator.ban(Client(live.url, worker_key).me()["id"], "testing")
    refused = run(live, worker_key, "work", "--exit-when-idle")
    assert refused.returncode == 1 and "cannot take work" in refused.stderr
    assert worker_key not in refused.stdout + refused.stderr


def test_command_line_errors_name_the_problem(live: LiveServer, tmp_path: Path) -> None:
    key, job_id = text_job(live, tmp_path, 3)
    other = live.key("requester", "other")
    not_theirs = run(live, other, "client", "status", str(job_id))
    assert not_theirs.returncode == 1 and "404" in not_theirs.stderr
    (tmp_path / "bad.jsonl").write_text('{"data": {"n": 1}}\n{"data": {"n": 2}, "answer": "maybe"}\n')
    refused = run(live, key, "client", "add-items", str(job_id), str(tmp_path / "bad.jsonl"))
    assert refused.returncode == 1 and "item 1" in refused.stderr and "--start 0" in refused.stderr
    (tmp_path / "bad.json").write_text("{")
    assert run(live, key, "client", "create-job", str(tmp_path / "bad.json")).returncode == 2
    waited = run(live, key, "client", "watch", str(job_id), "--interval", "0.1", "--timeout", "0.3")
    assert waited.returncode == 2 and "running after 0.3 s" in waited.stderr  # nobody works on it
    worker_key = live.key("worker", "w")
    assert "not a worker" in run(live, key, "work").stderr
    assert "not known" in run(live, "mk_nobody", "work").stderr
    assert worker_key  # (keys never appear in output: checked in the ban test)
