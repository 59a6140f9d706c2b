"""Exports of annotation results: COCO read back with pycocotools, YOLO and VOC archives that
round-trip to the same boxes within a pixel, Label Studio tasks with predictions; every record
carries the item's key and data, empty images are kept, unanswered ones left out."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from pycocotools.coco import COCO

from tests.annotation_jobs import (
    ANNOTATIONS,
    BOX_LABELS,
    GOLD_BOXES,
    HEIGHT,
    SKELETON_POINTS,
    WIDTH,
    annotation_job,
    gold_for,
    image,
)
from tests.conftest import bearer, fund, new_key, post_job
from tests.test_annotation_aggregation import aggregate, boxes_of, frame_number, results, work

Headers = dict[str, str]


def export(client: FlaskClient, requester: Headers, job_id: int, name: str) -> Any:
    return client.get(f"/v1/jobs/{job_id}/results?format={name}", headers=requester)


@pytest.fixture
def box_job(app: Flask, client: FlaskClient, requester: Headers) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Six frames fused from two answers each (four with two boxes, two with nothing; a third
    answer still wanted), and one added later, not answered."""
    job = annotation_job(client, requester, items=6, golden=0, overlap=3, items_per_task=3, golden_ratio=0.0)
    work(app, client, job["id"], boxes_of, "a")
    work(app, client, job["id"], lambda data: boxes_of(data, 1.5), "b")
    aggregate(app, job["id"])
    late = client.post(f"/v1/jobs/{job['id']}/items", json=[{"key": "late", "data": image("late")}], headers=requester)
    assert late.status_code == 201
    rows = results(client, requester, job["id"])
    assert rows["late"]["objects"] is None and rows["frame-4"]["objects"] == []
    return job, rows


def fused_boxes(rows: dict[str, dict[str, Any]], key: str) -> list[tuple[str, list[float]]]:
    return sorted((o["label"], o["bbox"]) for o in rows[key]["objects"])


def close(a: list[float], b: list[float], pixels: float = 1.0) -> bool:
    return len(a) == len(b) and bool(np.all(np.abs(np.asarray(a) - np.asarray(b)) <= pixels))


def test_coco_is_read_by_pycocotools_with_the_same_boxes(
    client: FlaskClient, requester: Headers, box_job: Any, tmp_path: Path
) -> None:
    job, rows = box_job
    response = export(client, requester, job["id"], "coco")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == f"attachment; filename=job-{job['id']}-coco.json"
    path = tmp_path / "coco.json"
    path.write_bytes(response.get_data())
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == BOX_LABELS  # the job's label order
    images = {img["key"]: img for img in coco.loadImgs(coco.getImgIds())}
    assert sorted(images) == [f"frame-{n}" for n in range(6)]  # empty frames kept, the unanswered one not
    for key, img in images.items():
        assert (img["width"], img["height"]) == (WIDTH, HEIGHT) and img["data"] == rows[key]["data"]
        assert img["file_name"] == f"{frame_number(img['data'])}.jpg"
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        found = sorted((coco.loadCats(a["category_id"])[0]["name"], a["bbox"]) for a in anns)
        assert found == fused_boxes(rows, key)
        assert all(a["key"] == key and 0 < a["score"] <= 1 and a["n"] == 2 for a in anns)
    assert sum(not coco.getAnnIds(imgIds=[i["id"]]) for i in images.values()) == 2


def read_zip(response: Any) -> zipfile.ZipFile:
    assert response.status_code == 200 and response.mimetype == "application/zip"
    return zipfile.ZipFile(io.BytesIO(response.get_data()))


def test_yolo_round_trips_to_the_same_boxes(client: FlaskClient, requester: Headers, box_job: Any) -> None:
    job, rows = box_job
    archive = read_zip(export(client, requester, job["id"], "yolo"))
    config = yaml.safe_load(archive.read("data.yaml"))
    assert config["names"] == BOX_LABELS and config["nc"] == 2 and config["task"] == "detect"
    items = [json.loads(line) for line in archive.read("items.jsonl").decode().splitlines()]
    assert sorted(entry["key"] for entry in items) == [f"frame-{n}" for n in range(6)]
    for entry in items:
        assert entry["data"] == rows[entry["key"]]["data"]
        got = []
        for line in archive.read(entry["file"]).decode().splitlines():
            klass, cx, cy, w, h = line.split()
            x, y = (float(cx) - float(w) / 2) * WIDTH, (float(cy) - float(h) / 2) * HEIGHT
            got.append((config["names"][int(klass)], [x, y, float(w) * WIDTH, float(h) * HEIGHT]))
        wanted = fused_boxes(rows, entry["key"])
        assert len(got) == len(wanted) and all(
            g[0] == w[0] and close(g[1], w[1]) for g, w in zip(sorted(got), wanted, strict=True)
        )
    assert archive.read("labels/frame-4.txt") == b""  # nothing to draw: an empty label file


def test_voc_round_trips_to_the_same_boxes(client: FlaskClient, requester: Headers, box_job: Any) -> None:
    job, rows = box_job
    archive = read_zip(export(client, requester, job["id"], "voc"))
    assert sorted(archive.namelist()) == sorted(f"Annotations/frame-{n}.xml" for n in range(6))
    for name in archive.namelist():
        root = ElementTree.fromstring(archive.read(name))
        key = root.findtext("key")
        assert key is not None and json.loads(root.findtext("data") or "") == rows[key]["data"]
        assert (root.findtext("size/width"), root.findtext("size/height")) == (str(WIDTH), str(HEIGHT))
        got = []
        for obj in root.iter("object"):
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{t}") or "") for t in ("xmin", "ymin", "xmax", "ymax"))
            got.append((obj.findtext("name"), [x1, y1, x2 - x1, y2 - y1]))
        wanted = fused_boxes(rows, key)
        assert len(got) == len(wanted) and all(
            g[0] == w[0] and close(g[1], w[1]) for g, w in zip(sorted(got), wanted, strict=True)
        )


def test_label_studio_tasks_carry_predictions(client: FlaskClient, requester: Headers, box_job: Any) -> None:
    job, rows = box_job
    response = export(client, requester, job["id"], "labelstudio")
    tasks = {task["meta"]["key"]: task for task in response.get_json()}
    assert sorted(tasks) == sorted(rows)  # every item, the unanswered one without predictions
    assert "predictions" not in tasks["late"] and tasks["frame-4"]["predictions"][0]["result"] == []
    for key, task in tasks.items():
        assert task["data"] == rows[key]["data"]
        if key == "late":
            continue
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == rows[key]["version"] and prediction["score"] == rows[key]["confidence"]
        got = sorted(
            (
                r["value"]["rectanglelabels"][0],
                [r["value"]["x"] * WIDTH / 100, r["value"]["y"] * HEIGHT / 100]
                + [r["value"]["width"] * WIDTH / 100, r["value"]["height"] * HEIGHT / 100],
            )
            for r in prediction["result"]
        )
        assert all(g[0] == w[0] and close(g[1], w[1], 0.01) for g, w in zip(got, fused_boxes(rows, key), strict=True))


def fused_job(app: Flask, client: FlaskClient, requester: Headers, kind: str) -> tuple[dict[str, Any], Any]:
    job = annotation_job(client, requester, kind, items=3, golden=0, overlap=2, items_per_task=3, golden_ratio=0.0)
    for name in ("a", "b"):
        work(app, client, job["id"], lambda data: gold_for(kind), name)
    aggregate(app, job["id"])
    return job, results(client, requester, job["id"])


def test_polygons_export_as_segmentation(app: Flask, client: FlaskClient, requester: Headers, tmp_path: Path) -> None:
    job, rows = fused_job(app, client, requester, "polygon")
    path = tmp_path / "coco.json"
    path.write_bytes(export(client, requester, job["id"], "coco").get_data())
    coco = COCO(str(path))
    for img in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        polygons = sorted(o["points"] for o in rows[img["key"]]["objects"])
        assert sorted(np.reshape(a["segmentation"][0], (-1, 2)).tolist() for a in anns) == polygons
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert coco.annToMask(ann).sum() == pytest.approx(w * h, rel=0.1)  # the squares fill their boxes
    archive = read_zip(export(client, requester, job["id"], "yolo"))
    assert yaml.safe_load(archive.read("data.yaml"))["task"] == "segment"
    for line in archive.read("labels/frame-0.txt").decode().splitlines():
        klass, *coords = line.split()
        points = np.reshape([float(c) for c in coords], (-1, 2)) * [WIDTH, HEIGHT]
        label = BOX_LABELS[int(klass)]
        (wanted,) = [o["points"] for o in rows["frame-0"]["objects"] if o["label"] == label]
        assert close(points.ravel().tolist(), np.ravel(wanted).tolist())


def test_keypoints_export_with_their_names_and_skeleton(
    app: Flask, client: FlaskClient, requester: Headers, tmp_path: Path
) -> None:
    job, rows = fused_job(app, client, requester, "keypoints")
    path = tmp_path / "coco.json"
    path.write_bytes(export(client, requester, job["id"], "coco").get_data())
    coco = COCO(str(path))
    (category,) = coco.loadCats(coco.getCatIds())
    assert category["keypoints"] == SKELETON_POINTS and category["skeleton"] == [[1, 2], [1, 3]]
    for img in coco.loadImgs(coco.getImgIds()):
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        (fused,) = rows[img["key"]]["objects"]
        assert np.reshape(ann["keypoints"], (-1, 3)).tolist() == fused["keypoints"] and ann["num_keypoints"] == 3
    archive = read_zip(export(client, requester, job["id"], "yolo"))
    config = yaml.safe_load(archive.read("data.yaml"))
    assert config["task"] == "pose" and config["kpt_shape"] == [3, 3]
    (line,) = archive.read("labels/frame-0.txt").decode().splitlines()
    values = [float(v) for v in line.split()[5:]]
    points = [[values[i] * WIDTH, values[i + 1] * HEIGHT, values[i + 2]] for i in range(0, len(values), 3)]
    (fused,) = rows["frame-0"]["objects"]
    assert close(np.ravel(points).tolist(), np.ravel(fused["keypoints"]).tolist())


def test_label_studio_takes_label_jobs(app: Flask, client: FlaskClient, requester: Headers) -> None:
    job, rows = fused_job(app, client, requester, "multilabel")
    tasks = export(client, requester, job["id"], "labelstudio").get_json()
    assert {t["meta"]["key"]: t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks} == {
        key: row["labels"] for key, row in rows.items()
    }


@pytest.mark.parametrize(
    ("kind", "name"),
    [("classification", "coco"), ("classification", "yolo"), ("polygon", "voc"), ("multilabel", "voc")],
)
def test_a_format_that_cannot_hold_the_type_is_refused(
    client: FlaskClient, requester: Headers, kind: str, name: str
) -> None:
    if kind == "classification":
        job = post_job(client, requester, items=2, golden=0)
    else:
        job = annotation_job(client, requester, kind, items=2, golden=0, annotation=ANNOTATIONS[kind])
    refused = export(client, requester, job["id"], name)
    assert refused.status_code == 422 and refused.get_json()["message"].startswith(
        f"format: {name} holds the results of"
    )


@pytest.mark.parametrize("name", ["coco", "yolo", "voc", "labelstudio"])
def test_another_requesters_job_is_not_exported(app: Flask, client: FlaskClient, requester: Headers, name: str) -> None:
    job = annotation_job(client, requester, items=2, golden=0)
    stranger = bearer(new_key(app, "requester", "stranger"))
    assert export(client, stranger, job["id"], name).status_code == 404
    worker = bearer(new_key(app, "worker", "w"))
    assert export(client, worker, job["id"], name).status_code == 403


def test_keys_that_are_not_file_names_get_safe_unique_names(
    app: Flask, client: FlaskClient, requester: Headers
) -> None:
    job = annotation_job(
        client, requester, items=0, golden=0, overlap=1, items_per_task=2, golden_ratio=0.0, launch=False
    )
    items = [{"key": "a/b", "data": image(0)}, {"key": "a b", "data": image(1)}, {"key": "../..", "data": image(2)}]
    assert client.post(f"/v1/jobs/{job['id']}/items", json=items, headers=requester).status_code == 201
    fund(client, requester, job["budget_cents"])
    assert client.post(f"/v1/jobs/{job['id']}/launch", headers=requester).status_code == 200
    work(app, client, job["id"], lambda data: {"objects": GOLD_BOXES})
    aggregate(app, job["id"])
    archive = read_zip(export(client, requester, job["id"], "yolo"))
    names = sorted(n for n in archive.namelist() if n.startswith("labels/"))
    assert len(names) == 3 and all(".." not in n and n.count("/") == 1 for n in names)
    assert sorted(json.loads(line)["key"] for line in archive.read("items.jsonl").decode().splitlines()) == sorted(
        i["key"] for i in items
    )
