"""Annotation jobs aggregated: fused objects (or label sets) with their scores in the results,
worker quality, agreement figures per job, dynamic overlap on geometry."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from marketplace.db import get_engine, session_scope
from marketplace.models import AggregationRun, Slot
from marketplace.services.aggregating import aggregate_job
from tests.annotation_jobs import GOLD_BOXES, annotation_job, gold_for, submit
from tests.conftest import bearer, new_key, post_job, work_through

Headers = dict[str, str]
Draw = Callable[[dict[str, Any]], dict[str, Any]]


def frame_number(data: dict[str, Any]) -> str:
    return data["image_url"].rsplit("/", 1)[1].split(".")[0]  # "3", or "g0" for a golden frame


def work(app: Flask, client: FlaskClient, job_id: int, draw: Draw, name: str = "w") -> int:
    """A new worker answers every task it can get with `draw(item data)`; its id."""
    worker = bearer(new_key(app, "worker", name))
    for _ in range(50):
        leased = client.post("/v1/assignments", json={"job_id": job_id}, headers=worker)
        if leased.status_code == 204:
            break
        task = leased.get_json()
        answers = [{"item_id": i["id"], **draw(i["data"])} for i in task["items"]]
        assert submit(client, worker, task, answers).status_code == 200
    return int(client.get("/v1/me", headers=worker).get_json()["id"])


def aggregate(app: Flask, job_id: int) -> dict[str, Any]:
    with session_scope(get_engine(app)) as session:
        return aggregate_job(session, job_id)


def results(client: FlaskClient, requester: Headers, job_id: int) -> dict[str, dict[str, Any]]:
    page = client.get(f"/v1/jobs/{job_id}/results?limit=1000", headers=requester).get_json()
    return {row["key"]: row for row in page["results"]}


def boxes_of(data: dict[str, Any], dx: float = 0.0) -> dict[str, Any]:
    """Frames 0-3 show GOLD_BOXES, frames 4-5 nothing (golden frames: as gold_for says)."""
    n = frame_number(data)
    if n.startswith("g") or int(n) < 4:
        return {"objects": [{**o, "bbox": [o["bbox"][0] + dx, *o["bbox"][1:]]} for o in GOLD_BOXES]}
    return {"objects": []}


def test_a_box_job_is_fused_into_objects_with_scores(app: Flask, client: FlaskClient, requester: Headers) -> None:
    job = annotation_job(
        client, requester, items=6, golden=2, overlap=3, items_per_task=3, golden_ratio=0.34, golden_max_views=10
    )
    for dx in (0, 2, -2):
        work(app, client, job["id"], lambda data, dx=dx: boxes_of(data, dx))
    summary = aggregate(app, job["id"])
    assert summary["items"] == 6 and summary["method"].startswith("box_fusion")
    rows = results(client, requester, job["id"])
    assert sorted(rows) == [f"frame-{n}" for n in range(6)]  # golden items are not results
    for key, row in rows.items():
        assert "label" not in row and row["data"]["width"] == 640 and row["answers"] == 3
        assert row["method"] == summary["method"] and "geometry" in row["version"]
        if int(key.split("-")[1]) >= 4:
            assert row["objects"] == []  # all agree: nothing to draw
            continue
        fused = {o["label"]: o for o in row["objects"]}
        assert sorted(fused) == ["car", "person"] and all(o["n"] == 3 and 0 < o["score"] <= 1 for o in fused.values())
        for gold in GOLD_BOXES:
            assert fused[gold["label"]]["bbox"] == pytest.approx(gold["bbox"], abs=1.5)
    quality = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["quality"]
    assert quality["workers"] == 3 and 0.9 < quality["agreement"]["mean_pairwise_iou"] <= 1
    assert quality["mean_golden_accuracy"] > 0.8  # mean scores on the golden frames
    workers = client.get(f"/v1/jobs/{job['id']}/workers", headers=requester).get_json()
    assert all(w["agreement"] > 0.9 and w["golden_seen"] >= 1 for w in workers), workers


def test_an_item_not_aggregated_yet_has_no_objects_rather_than_none(client: FlaskClient, requester: Headers) -> None:
    job = annotation_job(client, requester, items=2, golden=0, golden_ratio=0.0)
    rows = results(client, requester, job["id"])
    assert [row["objects"] for row in rows.values()] == [None, None]  # null: no answer yet; [] is an answer


def test_exports_carry_the_objects_and_the_item(app: Flask, client: FlaskClient, requester: Headers) -> None:
    job = annotation_job(client, requester, items=6, golden=0, overlap=1, items_per_task=3, golden_ratio=0.0)
    work(app, client, job["id"], boxes_of)
    aggregate(app, job["id"])
    rows = results(client, requester, job["id"])
    lines = client.get(f"/v1/jobs/{job['id']}/results?format=jsonl", headers=requester).get_data(as_text=True)
    assert {r["key"]: r for r in map(json.loads, lines.splitlines())} == rows
    table = client.get(f"/v1/jobs/{job['id']}/results?format=csv", headers=requester).get_data(as_text=True)
    parsed = list(csv.DictReader(io.StringIO(table)))
    assert list(parsed[0]) == ["item_id", "key", "data", "objects", "confidence", "method", "version", "answers"]
    assert {r["key"]: json.loads(r["objects"]) for r in parsed} == {k: r["objects"] for k, r in rows.items()}
    assert {r["key"]: json.loads(r["data"]) for r in parsed} == {k: r["data"] for k, r in rows.items()}


@pytest.mark.parametrize("kind", ["polygon", "keypoints"])
def test_polygons_and_keypoints_are_fused(app: Flask, client: FlaskClient, requester: Headers, kind: str) -> None:
    job = annotation_job(client, requester, kind, items=3, golden=1, overlap=3, items_per_task=2, golden_ratio=0.25)
    for _ in range(3):
        work(app, client, job["id"], lambda data: gold_for(kind))
    aggregate(app, job["id"])
    rows = results(client, requester, job["id"])
    shape = "points" if kind == "polygon" else "keypoints"
    for row in rows.values():
        assert [o["label"] for o in row["objects"]] == [o["label"] for o in gold_for(kind)["objects"]]
        assert all(o["n"] == 3 and shape in o for o in row["objects"])
    key = "mean_pairwise_iou" if kind == "polygon" else "mean_pairwise_oks"
    agreement = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["quality"]["agreement"]
    assert agreement[key] == pytest.approx(1.0)


def test_label_sets_are_fused_with_krippendorffs_alpha(app: Flask, client: FlaskClient, requester: Headers) -> None:
    job = annotation_job(
        client, requester, "multilabel", items=6, golden=2, overlap=3, items_per_task=3, golden_ratio=0.25
    )
    truth = {n: (["sunny"] if n % 2 else ["people", "cars"]) for n in range(6)}

    def honest(data: dict[str, Any]) -> dict[str, Any]:
        n = frame_number(data)
        return gold_for("multilabel") if n.startswith("g") else {"labels": truth[int(n)]}

    work(app, client, job["id"], honest, "a")
    work(app, client, job["id"], honest, "b")
    work(app, client, job["id"], lambda data: {"labels": []}, "lazy")
    aggregate(app, job["id"])
    rows = results(client, requester, job["id"])
    assert {k: r["labels"] for k, r in rows.items()} == {f"frame-{n}": truth[n] for n in range(6)}
    agreement = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["quality"]["agreement"]
    assert 0 < agreement["krippendorff_alpha"] < 1 and 0 < agreement["mean_pairwise_jaccard"] < 1


def test_a_classification_job_reports_krippendorffs_alpha(app: Flask, client: FlaskClient, requester: Headers) -> None:
    job = post_job(client, requester, items=6, golden=0, golden_ratio=0.0, overlap=2, items_per_task=3)
    work_through(client, bearer(new_key(app, "worker", "a")), job["id"], "cat")
    work_through(client, bearer(new_key(app, "worker", "b")), job["id"], "cat")
    aggregate(app, job["id"])
    quality = client.get(f"/v1/jobs/{job['id']}", headers=requester).get_json()["quality"]
    assert quality["agreement"] == {"krippendorff_alpha": 1.0}


def test_a_box_job_aggregated_again_without_new_answers_is_skipped(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = annotation_job(client, requester, items=3, golden=0, overlap=1, items_per_task=3, golden_ratio=0.0)
    work(app, client, job["id"], boxes_of)
    assert "skipped" not in aggregate(app, job["id"])
    assert aggregate(app, job["id"])["skipped"] == "no change since the last run"
    with session_scope(get_engine(app)) as session:
        assert session.execute(select(func.count()).select_from(AggregationRun)).scalar_one() == 1


def free_slots(app: Flask, job_id: int) -> int:
    with session_scope(get_engine(app)) as session:
        return int(session.execute(select(func.count()).where(Slot.job_id == job_id)).scalar_one())


def test_dynamic_overlap_asks_more_only_where_the_first_boxes_disagree(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    """Frames 0-3: two workers draw the same boxes, done at 2 answers; frames 4-5: one draws
    nothing where the other draws two boxes, so each gets a third answer."""
    job = annotation_job(
        client,
        requester,
        items=6,
        golden=0,
        overlap=2,
        overlap_max=4,
        target_confidence=0.75,
        items_per_task=6,
        golden_ratio=0.0,
    )
    work(app, client, job["id"], boxes_of, "a")
    work(app, client, job["id"], lambda data: {"objects": GOLD_BOXES}, "b")
    assert free_slots(app, job["id"]) == 0
    assert aggregate(app, job["id"])["answers_added"] == 2
    assert free_slots(app, job["id"]) == 2
    third = bearer(new_key(app, "worker", "c"))
    task = client.post("/v1/assignments", json={"job_id": job["id"]}, headers=third).get_json()
    assert sorted(frame_number(i["data"]) for i in task["items"]) == ["4", "5"]
