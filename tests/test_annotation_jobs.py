"""Annotation types in the job spec, and items checked against them on upload (golden answers
with the same checks as a worker's)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.annotation_jobs import ANNOTATIONS, GOLD_BOXES, annotation_job, gold_for, image
from tests.conftest import job_body


def create(client: FlaskClient, requester: dict[str, str], annotation: dict[str, Any], **extra: Any) -> Any:
    body = job_body(**{"annotation": annotation, "aggregation": "auto", **extra})
    return client.post("/v1/jobs", json=body, headers=requester)


def refusal(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.get_json()
    return response.get_json()["errors"]["json"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("kind", "stored"),
    [
        (
            "bbox",
            {"type": "bbox", "labels": ["person", "car"], "min_size": 4, "max_objects": 100, "iou_threshold": 0.5},
        ),
        (
            "polygon",
            {
                "type": "polygon",
                "labels": ["person", "car"],
                "min_vertices": 3,
                "max_vertices": 200,
                "max_objects": 100,
                "iou_threshold": 0.5,
            },
        ),
        (
            "keypoints",
            {
                "type": "keypoints",
                "labels": ["person"],
                "points": ["head", "left_hand", "right_hand"],
                "skeleton": [["head", "left_hand"], ["head", "right_hand"]],
                "max_objects": 100,
                "oks_threshold": 0.5,
            },
        ),
        ("multilabel", {"type": "multilabel", "labels": ["sunny", "people", "cars"]}),
    ],
)
def test_each_type_is_stored_with_its_defaults(
    client: FlaskClient, requester: dict[str, str], kind: str, stored: dict[str, Any]
) -> None:
    created = create(client, requester, ANNOTATIONS[kind])
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["annotation"] == stored


def test_settings_given_are_kept(client: FlaskClient, requester: dict[str, str]) -> None:
    spec = {"type": "bbox", "labels": ["person"], "min_size": 10, "max_objects": 3, "iou_threshold": 0.7}
    created = create(client, requester, spec)
    assert created.status_code == 201 and created.get_json()["annotation"] == spec


@pytest.mark.parametrize(
    ("annotation", "field", "reason"),
    [
        ({"type": "mask", "labels": ["a", "b"]}, "type", "Must be one of"),
        ({"type": "classification", "labels": ["only"]}, "labels", "at least 2 labels"),
        ({"type": "bbox", "labels": ["a"], "min_vertices": 3}, "min_vertices", "not used by the bbox type"),
        ({"type": "classification", "labels": ["a", "b"], "max_objects": 3}, "max_objects", "not used"),
        ({"type": "bbox", "labels": ["a"], "min_size": -1}, "min_size", "greater than or equal"),
        ({"type": "bbox", "labels": ["a"], "max_objects": 0}, "max_objects", "greater than or equal"),
        ({"type": "polygon", "labels": ["a"], "min_vertices": 5, "max_vertices": 4}, "max_vertices", "min_vertices"),
        ({"type": "polygon", "labels": ["a"], "min_vertices": 2}, "min_vertices", "greater than or equal"),
        ({"type": "keypoints", "labels": ["a"]}, "points", "names its points"),
        ({"type": "keypoints", "labels": ["a"], "points": ["x", "x"]}, "points", "unique"),
        ({"type": "keypoints", "labels": ["a"], "points": ["x", "y"], "skeleton": [["x", "z"]]}, "skeleton", "pair"),
        ({"type": "keypoints", "labels": ["a"], "points": ["x", "y"], "sigmas": [0.1]}, "sigmas", "one per point"),
        ({"type": "bbox", "labels": ["a"], "iou_threshold": 1.5}, "iou_threshold", "less than or equal to 0.95"),
        ({"type": "keypoints", "labels": ["a"], "points": ["x"], "iou_threshold": 0.5}, "iou_threshold", "not used"),
        ({"type": "bbox", "labels": ["a", "a"]}, "labels", "unique"),
    ],
)
def test_bad_specs_are_refused_naming_the_setting(
    client: FlaskClient, requester: dict[str, str], annotation: dict[str, Any], field: str, reason: str
) -> None:
    errors = refusal(create(client, requester, annotation))["annotation"]
    assert reason in str(errors[field]), errors


def test_annotation_types_take_their_own_aggregation(client: FlaskClient, requester: dict[str, str]) -> None:
    errors = refusal(create(client, requester, ANNOTATIONS["bbox"], **{"aggregation": "dawid_skene"}))
    assert "leave it auto" in errors["aggregation"][0]


def test_an_operator_cannot_switch_a_box_job_to_a_label_method(
    client: FlaskClient, requester: dict[str, str], operator: dict[str, str]
) -> None:
    job = annotation_job(client, requester, launch=False)
    patched = client.patch(f"/v1/jobs/{job['id']}", json={"aggregation": "majority_vote"}, headers=operator)
    assert "leave it auto" in refusal(patched)["aggregation"][0]


def test_a_per_type_price_may_name_the_new_types(client: FlaskClient, requester: dict[str, str]) -> None:
    priced = create(
        client, requester, ANNOTATIONS["multilabel"], pricing={"model": "tiered", "tiers": {"multilabel": 3}}
    )
    assert priced.status_code == 201, priced.get_json()


def upload(client: FlaskClient, requester: dict[str, str], job_id: int, items: list[dict[str, Any]]) -> Any:
    return client.post(f"/v1/jobs/{job_id}/items", json=items, headers=requester)


@pytest.mark.parametrize("kind", ["bbox", "polygon", "keypoints"])
@pytest.mark.parametrize(
    "data", [{"image_url": "x.jpg"}, {"width": 640}, {"width": 0, "height": 480}, {"width": "640", "height": 480}]
)
def test_geometry_items_need_the_image_size(
    client: FlaskClient, requester: dict[str, str], kind: str, data: dict[str, Any]
) -> None:
    job = annotation_job(client, requester, kind, items=0, golden=0, launch=False)
    response = upload(client, requester, job["id"], [{"data": image(0)}, {"data": data}])
    assert "width and height" in refusal(response)["1"]["data"]["width"][0]
    assert client.get(f"/v1/jobs/{job['id']}/items", headers=requester).get_json()["items"] == []  # nothing stored


def test_label_set_items_need_no_size(client: FlaskClient, requester: dict[str, str]) -> None:
    job = annotation_job(client, requester, "multilabel", items=0, golden=0, launch=False)
    assert upload(client, requester, job["id"], [{"data": {"text": "a street"}}]).status_code == 201


@pytest.mark.parametrize("kind", ["bbox", "polygon", "keypoints", "multilabel"])
def test_golden_answers_are_stored_as_sent_and_shown_to_the_requester(
    client: FlaskClient, requester: dict[str, str], kind: str
) -> None:
    job = annotation_job(client, requester, kind, items=1, golden=1, launch=False)
    items = client.get(f"/v1/jobs/{job['id']}/items", headers=requester).get_json()["items"]
    (golden,) = [i for i in items if i["golden"]]
    assert golden["answer"] == gold_for(kind)


def test_nothing_to_draw_is_a_golden_answer(client: FlaskClient, requester: dict[str, str]) -> None:
    job = annotation_job(client, requester, items=1, golden=1, gold={"objects": []}, launch=False)
    items = client.get(f"/v1/jobs/{job['id']}/items", headers=requester).get_json()["items"]
    assert [i["answer"] for i in items if i["golden"]] == [{"objects": []}]


BAD_GOLD = [
    ("bbox", "cat", "1.answer", "is an object with 'objects'"),
    ("bbox", {"labels": []}, "1.answer.labels", "not part of a bbox answer"),
    ("bbox", {}, "1.answer.objects", "needs 'objects'"),
    ("bbox", {"objects": [{"label": "dog", "bbox": [1, 1, 10, 10]}]}, "1.answer.objects.0.label", "not one of"),
    (
        "bbox",
        {"objects": [GOLD_BOXES[0], {"label": "car", "bbox": [630, 0, 20, 20]}]},
        "1.answer.objects.1.bbox",
        "outside the image (x + w = 650 > width 640)",
    ),
    ("bbox", {"objects": [{"label": "car", "bbox": [1, 1, 2, 20]}]}, "1.answer.objects.0.bbox", "min_size 4"),
    (
        "bbox",
        {"objects": [{"label": "car", "bbox": [1, 1, 0, 20]}]},
        "1.answer.objects.0.bbox",
        "both must be positive",
    ),
    (
        "polygon",
        {"objects": [{"label": "car", "points": [[0, 0], [10, 10], [10, 0], [0, 10]]}]},
        "1.answer.objects.0.points",
        "Self-intersection",
    ),
    (
        "polygon",
        {
            "objects": [
                {"label": "car", "polygons": [[[0, 0], [10, 0], [10, 10]], [[20, 0], [30, 10], [30, 0], [20, 10]]]}
            ]
        },
        "1.answer.objects.0.polygons.1",
        "Self-intersection",
    ),
    (
        "polygon",
        {"objects": [{"label": "car", "polygons": [[[0, 0], [10, 0], [10, 10]], [[5, 0], [15, 0], [15, 10]]]}]},
        "1.answer.objects.0.polygons.1",
        "overlaps part 0",
    ),
    (
        "keypoints",
        {"objects": [{"label": "person", "keypoints": [[1, 1, 2], [1, 1, 2]]}]},
        "1.answer.objects.0.keypoints",
        "one [x, y, v] per point",
    ),
    ("multilabel", {"labels": ["rainy"]}, "1.answer.labels.0", "not one of"),
]


@pytest.mark.parametrize(("kind", "gold", "field", "reason"), BAD_GOLD)
def test_bad_golden_answers_are_refused_with_the_workers_checks(
    client: FlaskClient, requester: dict[str, str], kind: str, gold: Any, field: str, reason: str
) -> None:
    job = annotation_job(client, requester, kind, items=0, golden=0, launch=False)
    response = upload(client, requester, job["id"], [{"data": image(0)}, {"data": image(1), "answer": gold}])
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["message"].startswith(f"{field}: ") and reason in response.get_json()["message"]
    assert client.get(f"/v1/jobs/{job['id']}/items", headers=requester).get_json()["items"] == []


def test_a_classification_job_still_wants_a_label_as_golden_answer(
    client: FlaskClient, requester: dict[str, str]
) -> None:
    created = client.post("/v1/jobs", json=job_body(), headers=requester).get_json()
    response = upload(client, requester, created["id"], [{"data": {"n": 1}, "answer": {"objects": []}}])
    assert refusal(response)["0"]["answer"] == ["not one of the job's labels"]
