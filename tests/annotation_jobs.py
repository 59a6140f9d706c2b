"""Annotation jobs for tests: boxes, polygons, keypoints and label sets over the API."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.conftest import create_job, job_body

WIDTH, HEIGHT = 640, 480
BOX_LABELS = ["person", "car"]
GOLD_BOXES = [{"label": "person", "bbox": [100, 100, 50, 120]}, {"label": "car", "bbox": [300, 200, 160, 90]}]
SKELETON_POINTS = ["head", "left_hand", "right_hand"]

ANNOTATIONS: dict[str, dict[str, Any]] = {
    "bbox": {"type": "bbox", "labels": BOX_LABELS},
    "polygon": {"type": "polygon", "labels": BOX_LABELS},
    "keypoints": {
        "type": "keypoints",
        "labels": ["person"],
        "points": SKELETON_POINTS,
        "skeleton": [["head", "left_hand"], ["head", "right_hand"]],
    },
    "multilabel": {"type": "multilabel", "labels": ["sunny", "people", "cars"]},
}


def image(n: int | str, width: int = WIDTH, height: int = HEIGHT) -> dict[str, Any]:
    return {"image_url": f"https://example.com/frames/{n}.jpg", "width": width, "height": height}


def box_polygon(bbox: list[float]) -> list[list[float]]:
    x, y, w, h = bbox
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


def gold_for(kind: str) -> dict[str, Any]:
    """A golden answer of each kind: two objects (one labelled person for keypoints)."""
    if kind == "bbox":
        return {"objects": GOLD_BOXES}
    if kind == "polygon":
        return {"objects": [{"label": o["label"], "points": box_polygon(o["bbox"])} for o in GOLD_BOXES]}
    if kind == "keypoints":
        return {"objects": [{"label": "person", "keypoints": [[120, 110, 2], [100, 180, 2], [150, 180, 1]]}]}
    return {"labels": ["sunny", "people"]}


def annotation_job(
    client: FlaskClient,
    headers: dict[str, str],
    kind: str = "bbox",
    items: int = 10,
    golden: int = 2,
    launch: bool = True,
    annotation: dict[str, Any] | None = None,
    gold: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A job of `kind` with `items` real images and `golden` golden ones (answer `gold_for(kind)`)."""
    body = job_body(**{"annotation": annotation or ANNOTATIONS[kind], "aggregation": "auto", **overrides})
    payload: list[dict[str, Any]] = [{"key": f"frame-{n}", "data": image(n)} for n in range(items)]
    payload += [{"key": f"gold-{n}", "data": image(f"g{n}"), "answer": gold or gold_for(kind)} for n in range(golden)]
    return create_job(client, headers, body, payload, launch=launch)


def lease(client: FlaskClient, worker: dict[str, str], job_id: int) -> dict[str, Any]:
    response = client.post("/v1/assignments", json={"job_id": job_id}, headers=worker)
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def submit(client: FlaskClient, worker: dict[str, str], task: dict[str, Any], answers: list[dict[str, Any]]) -> Any:
    return client.post(f"/v1/assignments/{task['id']}/submit", json={"answers": answers}, headers=worker)
