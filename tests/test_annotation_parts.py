"""Polygon objects in several parts through the API: fused, then exported with a polygon per part
(COCO rings or RLE masks, YOLO lines, Label Studio results); `masks` refused where it means nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from flask import Flask
from flask.testing import FlaskClient
from pycocotools.coco import COCO

from tests.annotation_jobs import BOX_LABELS, HEIGHT, WIDTH, annotation_job, box_polygon, image, lease, submit
from tests.conftest import bearer, fund, new_key, post_job
from tests.test_annotation_aggregation import aggregate, results, work
from tests.test_annotation_exports import export, read_zip
from tests.test_readme import README, _blocks

Headers = dict[str, str]

# A car split by a pole (a square and a triangle), and a person in one ring.
CAR_PARTS = [box_polygon([100, 100, 80, 60]), [[220, 100], [300, 100], [260, 170]]]
PERSON = box_polygon([400, 200, 40, 90])
DRAWN = {"objects": [{"label": "car", "polygons": CAR_PARTS}, {"label": "person", "points": PERSON}]}


@pytest.fixture
def parts_job(app: Flask, client: FlaskClient, requester: Headers) -> tuple[dict[str, Any], dict[str, Any]]:
    """A polygon job whose three frames two workers answered with DRAWN, aggregated."""
    job = annotation_job(client, requester, "polygon", items=3, golden=0, overlap=2, items_per_task=3, golden_ratio=0.0)
    for name in ("a", "b"):
        work(app, client, job["id"], lambda data: DRAWN, name)
    aggregate(app, job["id"])
    return job, results(client, requester, job["id"])


def same_rings(got: list[Any], want: list[Any]) -> bool:
    """The same polygons, whatever corner each ring starts at and in whichever order."""
    shapes = [sorted((shapely.Polygon(r).normalize() for r in rings), key=lambda p: p.wkt) for rings in (got, want)]
    return len(got) == len(want) and all(a.equals(b) for a, b in zip(*shapes, strict=True))


def coco_file(client: FlaskClient, requester: Headers, job_id: int, path: Path, query: str = "") -> COCO:
    response = export(client, requester, job_id, f"coco{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    path.write_bytes(response.get_data())
    return COCO(str(path))


def test_a_two_part_object_is_fused_and_kept_in_two_parts(parts_job: Any) -> None:
    _, rows = parts_job
    car, person = sorted(rows["frame-0"]["objects"], key=lambda o: o["label"])
    assert same_rings(car["polygons"], CAR_PARTS) and "points" not in car
    assert same_rings([person["points"]], [PERSON]) and "polygons" not in person


def test_coco_writes_a_ring_per_part_and_the_union_s_box_and_area(
    parts_job: Any, client: FlaskClient, requester: Headers, tmp_path: Path
) -> None:
    job, _ = parts_job
    coco = coco_file(client, requester, job["id"], tmp_path / "coco.json")
    (car,) = [
        a for a in coco.loadAnns(coco.getAnnIds()) if a["image_id"] == coco.getImgIds()[0] and a["category_id"] == 2
    ]
    assert same_rings([np.reshape(ring, (-1, 2)).tolist() for ring in car["segmentation"]], CAR_PARTS)
    assert car["bbox"] == [100, 100, 200, 70]  # from the square's corner to the triangle's tip
    assert car["area"] == pytest.approx(80 * 60 + 80 * 70 / 2)
    assert coco.annToMask(car).sum() == pytest.approx(car["area"], rel=0.1)


def test_rle_masks_are_the_polygons_masks(
    parts_job: Any, client: FlaskClient, requester: Headers, tmp_path: Path
) -> None:
    job, _ = parts_job
    rings = coco_file(client, requester, job["id"], tmp_path / "rings.json")
    masks = coco_file(client, requester, job["id"], tmp_path / "rle.json", "&masks=rle")
    assert masks.dataset["images"] == rings.dataset["images"]
    assert len(masks.dataset["annotations"]) == len(rings.dataset["annotations"]) == 6
    for ring, rle in zip(rings.dataset["annotations"], masks.dataset["annotations"], strict=True):
        assert {k: v for k, v in rle.items() if k != "segmentation"} == {
            k: v for k, v in ring.items() if k != "segmentation"
        }  # the same bbox, area, category, iscrowd 0, score and n
        assert rle["iscrowd"] == 0 and isinstance(rle["segmentation"]["counts"], str)
        assert rle["segmentation"]["size"] == [HEIGHT, WIDTH]
        want, got = rings.annToMask(ring).astype(bool), masks.annToMask(rle).astype(bool)
        assert got.sum() == want.sum() and (got & want).sum() / (got | want).sum() > 0.99


def test_yolo_has_a_line_per_part_and_label_studio_a_result_per_part(
    parts_job: Any, client: FlaskClient, requester: Headers
) -> None:
    job, _ = parts_job
    lines = read_zip(export(client, requester, job["id"], "yolo")).read("labels/frame-0.txt").decode().splitlines()
    car = str(BOX_LABELS.index("car"))
    segments = [
        (np.reshape([float(c) for c in rest], (-1, 2)) * [WIDTH, HEIGHT]).round().tolist()
        for klass, *rest in (line.split() for line in lines)
        if klass == car
    ]
    assert same_rings(segments, CAR_PARTS) and len(lines) == 3
    (task, *_) = export(client, requester, job["id"], "labelstudio").get_json()
    labels = sorted(r["value"]["polygonlabels"][0] for r in task["predictions"][0]["result"])
    assert labels == ["car", "car", "person"]


@pytest.mark.parametrize(
    ("kind", "query", "reason"),
    [
        ("polygon", "coco&masks=bitmap", "Must be one of: polygons, rle."),
        ("polygon", "yolo&masks=rle", "only for format=coco of a polygon job (this is format=yolo of a polygon job)"),
        ("polygon", "json&masks=rle", "only for format=coco of a polygon job"),
        ("bbox", "coco&masks=rle", "only for format=coco of a polygon job (this is format=coco of a bbox job)"),
        ("bbox", "coco&masks=polygons", "only for format=coco of a polygon job"),
        ("classification", "csv&masks=rle", "only for format=coco of a polygon job"),
    ],
)
def test_masks_are_refused_where_they_mean_nothing(
    client: FlaskClient, requester: Headers, kind: str, query: str, reason: str
) -> None:
    if kind == "classification":
        job = post_job(client, requester, items=1, golden=0)
    else:
        job = annotation_job(client, requester, kind, items=1, golden=0)
    refused = export(client, requester, job["id"], query)
    assert refused.status_code == 422, refused.get_data(as_text=True)
    (messages,) = [where["masks"] for where in refused.get_json()["errors"].values()]  # json or query
    assert any(reason in message for message in messages), messages


def readme_submit() -> dict[str, Any]:
    """The submit body the README shows for an object in several polygons."""
    start = README.index("**An object in several polygons.**")
    ((language, text), *_) = _blocks(README[start:])
    assert language == "json"
    body: dict[str, Any] = json.loads(text)
    return body


def test_the_readme_s_two_part_submit_is_taken_and_its_overlap_refused(app: Flask) -> None:
    client, requester = app.test_client(), bearer(new_key(app, "requester"))
    job = annotation_job(client, requester, "polygon", items=0, golden=0, items_per_task=1, launch=False)
    item = {"key": "street-001", "data": image(1, 1280, 720)}
    assert client.post(f"/v1/jobs/{job['id']}/items", json=[item], headers=requester).status_code == 201
    fund(client, requester, job["budget_cents"])
    assert client.post(f"/v1/jobs/{job['id']}/launch", headers=requester).status_code == 200
    worker = bearer(new_key(app, "worker"))
    task = lease(client, worker, job["id"])
    (answer,) = readme_submit()["answers"]
    answer["item_id"] = task["items"][0]["id"]
    car = answer["objects"][0]
    overlapping = {**car, "polygons": [car["polygons"][0], [[800, 400], [900, 400], [900, 500]]]}
    refused = submit(client, worker, task, [{**answer, "objects": [overlapping, *answer["objects"][1:]]}])
    message = "answers.0.objects.0.polygons.1: overlaps part 0 (the parts of an object are disjoint)"
    assert refused.status_code == 422 and refused.get_json()["message"] == message
    assert f"`{message}`" in README.replace("\n", " ")
    assert submit(client, worker, task, [answer]).status_code == 200
