"""Submitting annotation answers: every object checked before anything is stored, the same
answers through the hot path and through Flask, "nothing to draw" stored as an answer."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from marketplace.db import get_engine, session_scope
from marketplace.models import Answer
from tests.annotation_jobs import WIDTH, annotation_job, box_polygon, lease, submit
from tests.conftest import bearer, new_key, post_job

Headers = dict[str, str]


def stored(app: Flask) -> list[tuple[str | None, Any, bool, bool | None]]:
    with session_scope(get_engine(app)) as session:
        rows = session.execute(
            select(Answer.label, Answer.value, Answer.is_golden, Answer.correct).order_by(Answer.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def boxes(n: int = 2) -> list[dict[str, Any]]:
    return [{"label": "person", "bbox": [10 + 60 * k, 20, 50, 100]} for k in range(n)]


def setup(app: Flask, kind: str = "bbox", **job: Any) -> tuple[FlaskClient, Headers, dict[str, Any], dict[str, Any]]:
    client = app.test_client()
    requester = bearer(new_key(app, "requester"))
    created = annotation_job(client, requester, kind, **{"items": 6, "golden": 0, "golden_ratio": 0.0, **job})
    worker = bearer(new_key(app, "worker"))
    return client, worker, created, lease(client, worker, created["id"])


def test_boxes_are_stored_as_sent_and_nothing_to_draw_is_an_answer(either_app: Flask) -> None:
    client, worker, _, task = setup(either_app)
    first, *rest = task["items"]
    answers = [{"item_id": first["id"], "objects": boxes(3)}] + [{"item_id": i["id"], "objects": []} for i in rest]
    done = submit(client, worker, task, answers)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["answers"] == len(task["items"])
    rows = stored(either_app)
    assert sorted(rows, key=lambda r: len(r[1]["objects"]), reverse=True) == [
        (None, {"objects": boxes(3)}, False, None),
        *[(None, {"objects": []}, False, None)] * len(rest),
    ]


def test_a_retry_with_its_key_gets_the_first_result(either_app: Flask) -> None:
    client, worker, _, task = setup(either_app)
    answers = [{"item_id": i["id"], "objects": boxes(1)} for i in task["items"]]
    url = f"/v1/assignments/{task['id']}/submit"
    headers = {**worker, "Idempotency-Key": "boxes-1"}
    first = client.post(url, json={"answers": answers}, headers=headers)
    again = client.post(url, json={"answers": answers}, headers=headers)
    assert first.status_code == again.status_code == 200 and first.get_json() == again.get_json()
    assert len(stored(either_app)) == len(task["items"])


BAD_BOXES = [
    (
        {"label": "person", "bbox": [WIDTH - 20, 10, 50, 50]},
        "bbox",
        f"outside the image (x + w = {WIDTH + 30} > width {WIDTH})",
    ),
    ({"label": "dog", "bbox": [10, 10, 50, 50]}, "label", "not one of the labels in the task's annotation"),
    ({"label": "person", "bbox": [10, 10, 2, 50]}, "bbox", "smaller than the job's min_size 4 (w = 2, h = 50)"),
    ({"label": "person", "bbox": [10, 10, -5, 50]}, "bbox", "not a box (w = -5, h = 50: both must be positive)"),
    ({"label": "person", "bbox": [10, 10, 50]}, "bbox", "[x, y, w, h]: four numbers"),
    ({"label": "person", "box": [10, 10, 50, 50]}, "box", "not part of a bbox object (label and bbox)"),
]


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_BOXES)
def test_a_bad_box_is_refused_naming_its_place_and_nothing_is_stored(
    either_app: Flask, bad: dict[str, Any], field: str, reason: str
) -> None:
    client, worker, _, task = setup(either_app)
    answers = [{"item_id": i["id"], "objects": boxes(2)} for i in task["items"]]
    answers[-1]["objects"].insert(1, bad)
    last = len(answers) - 1
    refused = submit(client, worker, task, answers)
    assert refused.status_code == 422, refused.get_json()
    assert refused.get_json()["message"] == f"answers.{last}.objects.1.{field}: {reason}"
    assert refused.get_json()["errors"] == {"json": {"answers": {str(last): {"objects": {"1": {field: [reason]}}}}}}
    assert stored(either_app) == []
    fixed = submit(client, worker, task, [{"item_id": i["id"], "objects": boxes(2)} for i in task["items"]])
    assert fixed.status_code == 200  # the task is still open


def test_more_objects_than_the_job_takes_are_refused(either_app: Flask) -> None:
    annotation = {"type": "bbox", "labels": ["person"], "max_objects": 2}
    client, worker, _, task = setup(either_app, annotation=annotation)
    answers = [{"item_id": i["id"], "objects": boxes(3)} for i in task["items"]]
    refused = submit(client, worker, task, answers)
    assert refused.get_json()["message"] == "answers.0.objects: more objects than the job's max_objects (3 > 2)"
    assert stored(either_app) == []


def test_a_polygon_that_crosses_itself_is_refused(either_app: Flask) -> None:
    client, worker, _, task = setup(either_app, "polygon")
    square = [[10, 10], [110, 10], [110, 110], [10, 110]]
    answers = [{"item_id": i["id"], "objects": [{"label": "car", "points": square}]} for i in task["items"]]
    answers[0]["objects"].append({"label": "car", "points": [[0, 0], [100, 100], [100, 0], [0, 100]]})
    refused = submit(client, worker, task, answers)
    assert (
        refused.get_json()["message"] == "answers.0.objects.1.points: not a simple polygon (Self-intersection[50 50])"
    )
    answers[0]["objects"][1]["points"] = [[0, 0], [10, 10], [20, 20]]
    refused = submit(client, worker, task, answers)
    assert refused.get_json()["message"] == "answers.0.objects.1.points: no area (the corners lie on one line)"
    answers[0]["objects"][1]["points"] = [[0, 0], [10, 10]]
    refused = submit(client, worker, task, answers)
    assert refused.get_json()["message"] == "answers.0.objects.1.points: 2 corners; the job takes 3 to 200"
    assert stored(either_app) == []
    answers[0]["objects"].pop()
    assert submit(client, worker, task, answers).status_code == 200
    assert [v["objects"] for _, v, _, _ in stored(either_app)] == [[{"label": "car", "points": square}]] * len(answers)


def test_an_object_in_several_polygons_has_each_part_checked(either_app: Flask) -> None:
    client, worker, _, task = setup(either_app, "polygon")
    car = {"label": "car", "polygons": [box_polygon([10, 10, 100, 80]), box_polygon([130, 10, 60, 80])]}
    answers = [
        {"item_id": i["id"], "objects": [{"label": "car", "points": box_polygon([5, 5, 9, 9])}]} for i in task["items"]
    ]
    answers[0]["objects"].append({**car, "polygons": [*car["polygons"], [[0, 0], [100, 100], [100, 0], [0, 100]]]})
    refused = submit(client, worker, task, answers)
    reason = "not a simple polygon (Self-intersection[50 50])"
    assert refused.status_code == 422, refused.get_json()
    assert refused.get_json()["message"] == f"answers.0.objects.1.polygons.2: {reason}"
    assert refused.get_json()["errors"] == {
        "json": {"answers": {"0": {"objects": {"1": {"polygons": {"2": [reason]}}}}}}
    }
    answers[0]["objects"][1] = {**car, "polygons": [*car["polygons"], box_polygon([150, 50, 100, 100])]}
    refused = submit(client, worker, task, answers)
    assert (
        refused.get_json()["message"]
        == "answers.0.objects.1.polygons.2: overlaps part 1 (the parts of an object are disjoint)"
    )
    answers[0]["objects"][1] = {**car, "points": box_polygon([300, 10, 20, 20])}
    refused = submit(client, worker, task, answers)
    assert refused.get_json()["message"] == "answers.0.objects.1.polygons: give one of points or polygons, not both"
    assert stored(either_app) == []
    answers[0]["objects"][1] = car
    assert submit(client, worker, task, answers).status_code == 200
    assert [v["objects"] for _, v, _, _ in stored(either_app)][0][1] == car


def test_keypoints_outside_the_image_are_refused_unless_not_labelled(either_app: Flask) -> None:
    client, worker, _, task = setup(either_app, "keypoints")
    person = {"label": "person", "keypoints": [[120, 110, 2], [100, 900, 1], [150, 180, 2]]}
    answers = [{"item_id": i["id"], "objects": [person]} for i in task["items"]]
    refused = submit(client, worker, task, answers)
    assert refused.get_json()["message"] == (
        "answers.0.objects.0.keypoints.1: left_hand outside the image (y = 900 > height 480)"
    )
    person["keypoints"][1] = [100, 900, 0]  # not labelled: where it is does not matter
    assert submit(client, worker, task, answers).status_code == 200


def test_label_sets_are_stored_and_may_be_empty(either_app: Flask) -> None:
    client, worker, _, task = setup(either_app, "multilabel")
    first, *rest = task["items"]
    answers = [{"item_id": first["id"], "labels": ["sunny", "cars"]}] + [
        {"item_id": i["id"], "labels": []} for i in rest
    ]
    assert submit(client, worker, task, [{**answers[0], "labels": ["snow"]}, *answers[1:]]).get_json()["message"] == (
        "answers.0.labels.0: not one of the labels in the task's annotation"
    )
    assert submit(client, worker, task, answers).status_code == 200
    assert sorted(v["labels"] for _, v, _, _ in stored(either_app)) == [[]] * len(rest) + [["sunny", "cars"]]


def test_an_answer_of_another_type_is_refused(either_app: Flask) -> None:
    client, worker, _, task = setup(either_app, annotation={"type": "bbox", "labels": ["person", "car"]})
    as_labels = [{"item_id": i["id"], "label": "person"} for i in task["items"]]  # labels of the job's set
    refused = submit(client, worker, task, as_labels)
    assert refused.get_json()["message"] == "answers.0.label: the items of a bbox job are answered with objects"
    as_sets = [{"item_id": i["id"], "labels": ["person"]} for i in task["items"]]
    assert submit(client, worker, task, as_sets).get_json()["message"].startswith("answers.0.labels: the items of")
    assert stored(either_app) == []


def test_objects_for_a_classification_are_refused(either_app: Flask) -> None:
    client = either_app.test_client()
    requester = bearer(new_key(either_app, "requester"))
    job = post_job(client, requester, items=4, golden=0, golden_ratio=0.0, items_per_task=2)
    worker = bearer(new_key(either_app, "worker"))
    task = lease(client, worker, job["id"])
    refused = submit(client, worker, task, [{"item_id": i["id"], "objects": []} for i in task["items"]])
    assert (
        refused.get_json()["message"] == "answers.0.objects: the items of a classification job are answered with label"
    )
    assert stored(either_app) == []


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        ({"objects": [], "label": "person"}, "objects"),
        ({"labels": [], "objects": []}, "objects"),
        ({"objects": "none"}, "objects"),
        ({"objects": [1]}, "objects"),
        ({"labels": [""]}, "labels"),
    ],
)
def test_malformed_answers_are_refused_by_the_schema(either_app: Flask, answer: dict[str, Any], field: str) -> None:
    client, worker, _, task = setup(either_app)
    answers = [{"item_id": i["id"], "objects": []} for i in task["items"]]
    answers[0] = {"item_id": answers[0]["item_id"], **answer}
    refused = submit(client, worker, task, answers)
    assert refused.status_code == 422 and field in refused.get_json()["errors"]["json"]["answers"]["0"]
    assert stored(either_app) == []


def test_a_golden_box_answer_is_stored_unscored(either_app: Flask) -> None:
    """Scored off the submit (services/golden.py): the submit does the same work either way."""
    client, worker, _, task = setup(either_app, golden=4, golden_ratio=0.5)
    answers = [{"item_id": i["id"], "objects": boxes(1)} for i in task["items"]]
    assert submit(client, worker, task, answers).status_code == 200
    rows = stored(either_app)
    assert any(golden for _, _, golden, _ in rows) and all(correct is None for *_, correct in rows)
