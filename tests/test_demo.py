"""`marketplace demo`: the same seed gives the same crowd, answers, bans and accuracy (read from
the API alone); the temporary data folder goes unless kept; the report's golden counts for a
banned worker are the ones its ban was decided on."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from marketplace.demo import DemoSettings, SimWorker, crowd, demo_items, run_demo, simulated_answer
from marketplace.demo_report import worker_rows

SMALL = DemoSettings(
    items=80, workers=6, spammers=2, golden_share=0.25, golden_ratio=0.4, concurrency=4, seed=11, items_per_task=5
)


def test_a_simulated_answer_depends_on_the_seed_the_worker_and_the_key_only() -> None:
    worker = SimWorker("worker-03", 0.7)
    first = [simulated_answer(7, worker, f"k{i}", "cat") for i in range(200)]
    assert first == [simulated_answer(7, SimWorker("worker-03", 0.7), f"k{i}", "cat") for i in range(200)]
    assert first == [simulated_answer(7, worker, f"k{i}", "cat") for i in reversed(range(200))][::-1]
    assert 0.6 < first.count("cat") / 200 < 0.8  # its accuracy
    assert first != [simulated_answer(8, worker, f"k{i}", "cat") for i in range(200)]
    assert first != [simulated_answer(7, SimWorker("worker-04", 0.7), f"k{i}", "cat") for i in range(200)]
    items, truth = demo_items(SMALL)
    assert (items, truth) == demo_items(SMALL) and len(set(truth)) == 80
    assert sum("answer" in item for item in items) == 20 and [w.name for w in crowd(SMALL)][-2:] == [
        "spammer-1",
        "spammer-2",
    ]


def test_a_banned_workers_golden_seen_is_the_g_of_banned_after_n_answers_g_golden() -> None:
    spammer, honest = SimWorker("spammer-1", None, id=5, answered=40), SimWorker("worker-01", 0.9, id=6, answered=120)
    scores = {6: {"golden_seen": 12, "golden_accuracy": 0.9167, "agreement": 0.91}}  # the banned one has none
    bans = {5: {"golden_seen": 9, "golden_correct": 1}}
    rows = worker_rows([honest, spammer], scores, bans)
    banned = next(row for row in rows if row.startswith("spammer-1"))
    seen = int(re.split(r"\s+", banned)[2].rstrip("*"))
    assert seen == 9 and banned.endswith("yes, after 40 answers (9 golden)") and "0.11" in banned
    assert re.split(r"\s+", next(row for row in rows if row.startswith("worker-01")))[2:4] == ["12", "0.92"]


def _run(settings: DemoSettings, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, object], Path, str]:
    figures = run_demo(settings)
    out = capsys.readouterr().out
    folder = Path(re.search(r"^data: (\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    return figures, folder, out


def test_the_same_seed_gives_the_same_run(capsys: pytest.CaptureFixture[str]) -> None:
    first, folder, out = _run(SMALL, capsys)
    assert not folder.exists(), "the data folder is deleted unless kept"
    banned = set(first["banned_after_golden"])  # type: ignore[call-overload]
    assert {"spammer-1", "spammer-2"} <= banned, out  # the spammers were stopped: bans are part of what repeats
    accuracy = {worker.name: worker.accuracy or 0.0 for worker in crowd(SMALL)}
    assert all(accuracy[name] < 0.7 for name in banned - {"spammer-1", "spammer-2"}), out  # the golden rule's 0.7
    assert first["items"] == 60 and first["accuracy"]["auto"] > 0.6, out  # type: ignore[index]
    second, kept, out = _run(DemoSettings(**{**SMALL.__dict__, "keep": True}), capsys)
    assert second == first, out
    assert kept.exists() and (kept / "api.log").exists()
    assert "kept the data folder" in out
    shutil.rmtree(kept)


def test_a_seeded_pool_reads_the_golden_items_on_every_lease() -> None:
    """The golden pool is cached for 30 s per process; a refresh timed by the clock would make a
    seeded run (the demo's) depend on the machine's speed, so under POOL_SEED it is read each time."""
    from flask import Flask
    from sqlalchemy import create_engine

    from marketplace.pool import lease

    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/golden_pool_cache")  # never connected
    loads: list[int] = []

    def loader() -> list[int]:
        loads.append(1)
        return [1, 2, 3]

    for seed, expected in (("", 1), ("7", 2)):
        app = Flask(__name__)
        app.config["POOL_SEED"] = seed
        lease._golden_ids.clear()
        loads.clear()
        with app.app_context():
            assert lease._golden_pool(engine, 1, loader) == lease._golden_pool(engine, 1, loader) == [1, 2, 3]
        assert len(loads) == expected, seed
    engine.dispose()
