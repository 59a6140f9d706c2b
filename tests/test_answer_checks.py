"""Every check an annotation answer passes (`marketplace/answer_checks.py`), one bad input each."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace.answer_checks import check_item_data, check_value, image_size
from marketplace.errors import Invalid
from marketplace.settings import AnnotationSpec

SIZE = (1280.0, 720.0)
BOX = AnnotationSpec.load({"type": "bbox", "labels": ["person", "car"], "min_size": 4, "max_objects": 3})
POLYGON = AnnotationSpec.load({"type": "polygon", "labels": ["road"], "min_vertices": 3, "max_vertices": 5})
KEYPOINTS = AnnotationSpec.load({"type": "keypoints", "labels": ["person"], "points": ["head", "hand"]})
LABELS = AnnotationSpec.load({"type": "multilabel", "labels": ["sunny", "people"]})
SQUARE = [[10, 10], [110, 10], [110, 110], [10, 110]]
FAR = [[500, 500], [600, 500], [600, 600]]
BESIDE = [[110, 10], [210, 10], [210, 110], [110, 110]]  # shares SQUARE's right edge
BOWTIE = [[0, 0], [10, 10], [10, 0], [0, 10]]


def refused(spec: AnnotationSpec, value: Any) -> tuple[str, str]:
    with pytest.raises(Invalid) as caught:
        check_value(spec, value, SIZE, "answers.0")
    field, _, reason = caught.value.message.partition(": ")
    return field, reason


GOOD = [
    (BOX, {"objects": []}),
    (BOX, {"objects": [{"label": "person", "bbox": [0, 0, 1280, 720]}]}),
    (BOX, {"objects": [{"label": "car", "bbox": [-1, -1, 1282, 722]}]}),  # 1 pixel past each edge
    (BOX, {"objects": [{"label": "car", "bbox": [3.5, 2.25, 4, 4.0]}]}),
    (POLYGON, {"objects": [{"label": "road", "points": SQUARE}]}),
    (POLYGON, {"objects": [{"label": "road", "points": [*SQUARE, SQUARE[0]]}]}),  # a closed ring
    (POLYGON, {"objects": [{"label": "road", "polygons": [SQUARE, FAR]}]}),  # a car split by a pole
    (POLYGON, {"objects": [{"label": "road", "polygons": [SQUARE, BESIDE]}]}),  # parts may touch
    (POLYGON, {"objects": [{"label": "road", "polygons": [SQUARE]}]}),  # one part is an object too
    (KEYPOINTS, {"objects": [{"label": "person", "keypoints": [[5, 5, 2], [0, 0, 0]]}]}),
    (KEYPOINTS, {"objects": [{"label": "person", "keypoints": [[5, 5, 1], [5000, -30, 0]]}]}),  # v = 0: anywhere
    (LABELS, {"labels": []}),
    (LABELS, {"labels": ["people", "sunny"]}),
]


@pytest.mark.parametrize(("spec", "value"), GOOD)
def test_good_answers_are_kept_as_sent(spec: AnnotationSpec, value: dict[str, Any]) -> None:
    assert check_value(spec, value, SIZE, "answers.0") == value


BAD = [
    # the answer's shape
    (BOX, "person", "answers.0", "is an object with 'objects'"),
    (BOX, {}, "answers.0.objects", "needs 'objects' (an empty list is an answer)"),
    (BOX, {"objects": [], "label": "person"}, "answers.0.label", "not part of a bbox answer"),
    (BOX, {"objects": {}}, "answers.0.objects", "a list of objects"),
    (BOX, {"objects": ["person"]}, "answers.0.objects.0", "an object with a label and 'bbox'"),
    (
        BOX,
        {"objects": [{"label": "person", "bbox": [1, 1, 9, 9], "score": 1}]},
        "answers.0.objects.0.score",
        "not part of a bbox object",
    ),
    # labels
    (BOX, {"objects": [{"label": "dog", "bbox": [1, 1, 9, 9]}]}, "answers.0.objects.0.label", "not one of the labels"),
    (BOX, {"objects": [{"bbox": [1, 1, 9, 9]}]}, "answers.0.objects.0.label", "not one of the labels"),
    (BOX, {"objects": [{"label": "car"}]}, "answers.0.objects.0.bbox", "missing"),
    # at most max_objects
    (
        BOX,
        {"objects": [{"label": "car", "bbox": [1, 1, 9, 9]}] * 4},
        "answers.0.objects",
        "more objects than the job's max_objects (4 > 3)",
    ),
    # boxes
    (BOX, {"objects": [{"label": "car", "bbox": [1, 1, 9]}]}, "answers.0.objects.0.bbox", "four numbers"),
    (BOX, {"objects": [{"label": "car", "bbox": [1, 1, "9", 9]}]}, "answers.0.objects.0.bbox", "four numbers"),
    (BOX, {"objects": [{"label": "car", "bbox": [1, 1, True, 9]}]}, "answers.0.objects.0.bbox", "four numbers"),
    (BOX, {"objects": [{"label": "car", "bbox": [1, 1, float("nan"), 9]}]}, "answers.0.objects.0.bbox", "four numbers"),
    (BOX, {"objects": [{"label": "car", "bbox": [1, 1, 0, 9]}]}, "answers.0.objects.0.bbox", "both must be positive"),
    (
        BOX,
        {"objects": [{"label": "car", "bbox": [50, 50, -20, 9]}]},
        "answers.0.objects.0.bbox",
        "both must be positive",
    ),
    (
        BOX,
        {"objects": [{"label": "car", "bbox": [1, 1, 3, 9]}]},
        "answers.0.objects.0.bbox",
        "smaller than the job's min_size 4 (w = 3, h = 9)",
    ),
    (
        BOX,
        {"objects": [{"label": "car", "bbox": [1250, 10, 50, 50]}]},
        "answers.0.objects.0.bbox",
        "outside the image (x + w = 1300 > width 1280)",
    ),
    (
        BOX,
        {"objects": [{"label": "car", "bbox": [10, 700, 50, 50]}]},
        "answers.0.objects.0.bbox",
        "outside the image (y + h = 750 > height 720)",
    ),
    (
        BOX,
        {"objects": [{"label": "car", "bbox": [-2, 10, 50, 50]}]},
        "answers.0.objects.0.bbox",
        "outside the image (x = -2 < 0)",
    ),
    (
        BOX,
        {"objects": [{"label": "car", "bbox": [10, -1.5, 50, 50]}]},
        "answers.0.objects.0.bbox",
        "outside the image (y = -1.5 < 0)",
    ),
    # polygons
    (
        POLYGON,
        {"objects": [{"label": "road", "points": SQUARE[:2]}]},
        "answers.0.objects.0.points",
        "2 corners; the job takes 3 to 5",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "points": SQUARE + SQUARE[:2]}]},
        "answers.0.objects.0.points",
        "6 corners; the job takes 3 to 5",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "points": [[1, 1], [2, 2], [3]]}]},
        "answers.0.objects.0.points.2",
        "[x, y]: two numbers",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "points": [[1, 1], [2000, 2], [3, 30]]}]},
        "answers.0.objects.0.points.1",
        "outside the image (x = 2000 > width 1280)",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "points": [[1, 1], [20, 20], [40, 40]]}]},
        "answers.0.objects.0.points",
        "no area (the corners lie on one line)",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "points": BOWTIE}]},
        "answers.0.objects.0.points",
        "not a simple polygon (Self-intersection[5 5])",
    ),
    (POLYGON, {"objects": [{"label": "road", "points": "0,0 1,1"}]}, "answers.0.objects.0.points", "a list of corners"),
    # several polygons per object: each part checked as a ring, the parts disjoint
    (POLYGON, {"objects": [{"label": "road"}]}, "answers.0.objects.0.points", "missing (or polygons: several"),
    (
        POLYGON,
        {"objects": [{"label": "road", "points": SQUARE, "polygons": [FAR]}]},
        "answers.0.objects.0.polygons",
        "give one of points or polygons, not both",
    ),
    (POLYGON, {"objects": [{"label": "road", "polygons": []}]}, "answers.0.objects.0.polygons", "a list of 1 to"),
    (POLYGON, {"objects": [{"label": "road", "polygons": SQUARE}]}, "answers.0.objects.0.polygons.0", "2 corners"),
    (POLYGON, {"objects": [{"label": "road", "polygons": [FAR] * 101}]}, "answers.0.objects.0.polygons", "1 to 100"),
    (
        POLYGON,
        {"objects": [{"label": "road", "polygons": [SQUARE, BOWTIE]}]},
        "answers.0.objects.0.polygons.1",
        "not a simple polygon (Self-intersection[5 5])",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "polygons": [SQUARE, FAR[:2]]}]},
        "answers.0.objects.0.polygons.1",
        "2 corners; the job takes 3 to 5",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "polygons": [SQUARE, SQUARE + SQUARE[:2]]}]},
        "answers.0.objects.0.polygons.1",
        "6 corners; the job takes 3 to 5",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "polygons": [FAR, [[1, 1], [1282, 2], [3, 30]]]}]},
        "answers.0.objects.0.polygons.1.1",
        "outside the image (x = 1282 > width 1280)",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "polygons": [FAR, [[1, 1], [20, 20], [40, 40]]]}]},
        "answers.0.objects.0.polygons.1",
        "no area",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "polygons": [FAR, SQUARE, [[100, 100], [150, 100], [150, 150]]]}]},
        "answers.0.objects.0.polygons.2",
        "overlaps part 1 (the parts of an object are disjoint)",
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "polygons": [SQUARE, [[20, 20], [30, 20], [30, 30]]]}]},
        "answers.0.objects.0.polygons.1",
        "overlaps part 0",  # inside another part
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "polygons": [FAR, FAR]}]},
        "answers.0.objects.0.polygons.1",
        "overlaps part 0",  # the same part twice
    ),
    (
        POLYGON,
        {"objects": [{"label": "road", "polygons": [FAR], "holes": []}]},
        "answers.0.objects.0.holes",
        "not part of a polygon object (label and points or polygons)",
    ),
    # keypoints
    (
        KEYPOINTS,
        {"objects": [{"label": "person", "keypoints": [[5, 5, 2]]}]},
        "answers.0.objects.0.keypoints",
        "one [x, y, v] per point of the job, in its order (2)",
    ),
    (
        KEYPOINTS,
        {"objects": [{"label": "person", "keypoints": [[5, 5, 3], [1, 1, 2]]}]},
        "answers.0.objects.0.keypoints.0",
        "v 0 (not labelled), 1 (occluded) or 2 (visible)",
    ),
    (
        KEYPOINTS,
        {"objects": [{"label": "person", "keypoints": [[5, 5, 2.0], [1, 1, 2]]}]},
        "answers.0.objects.0.keypoints.0",
        "v 0 (not labelled)",
    ),
    (
        KEYPOINTS,
        {"objects": [{"label": "person", "keypoints": [[5, 5, 2], [1, 800, 1]]}]},
        "answers.0.objects.0.keypoints.1",
        "hand outside the image (y = 800 > height 720)",
    ),
    (
        KEYPOINTS,
        {"objects": [{"label": "person", "keypoints": [[5, 5, 0], [1, 1, 0]]}]},
        "answers.0.objects.0.keypoints",
        "no point labelled",
    ),
    # label sets
    (LABELS, {"labels": "sunny"}, "answers.0.labels", "a list of the job's labels"),
    (LABELS, {"labels": ["rainy"]}, "answers.0.labels.0", "not one of the labels"),
    (LABELS, {"labels": ["sunny", "sunny"]}, "answers.0.labels.1", "the same label twice"),
    (LABELS, {"labels": [], "objects": []}, "answers.0.objects", "not part of a multilabel answer"),
]


@pytest.mark.parametrize(("spec", "value", "field", "reason"), BAD)
def test_each_bad_answer_is_refused_naming_its_place(spec: AnnotationSpec, value: Any, field: str, reason: str) -> None:
    got_field, got_reason = refused(spec, value)
    assert got_field == field and reason in got_reason, (got_field, got_reason)


def test_the_first_bad_object_is_named() -> None:
    objects = [{"label": "car", "bbox": [1, 1, 9, 9]}] * 3 + [{"label": "car", "bbox": [1250, 1, 50, 9]}]
    spec = AnnotationSpec.load({"type": "bbox", "labels": ["car"]})
    with pytest.raises(Invalid) as caught:
        check_value(spec, {"objects": objects}, SIZE, "answers.0")
    assert caught.value.message == "answers.0.objects.3.bbox: outside the image (x + w = 1300 > width 1280)"
    assert caught.value.errors == {
        "json": {"answers": {"0": {"objects": {"3": {"bbox": ["outside the image (x + w = 1300 > width 1280)"]}}}}}
    }


@pytest.mark.parametrize(
    ("data", "size"),
    [
        ({"width": 640, "height": 480}, (640.0, 480.0)),
        ({"width": 640.5, "height": 480}, (640.5, 480.0)),
        ({"width": 640}, None),
        ({"width": -1, "height": 480}, None),
        ({"width": True, "height": 480}, None),
        ({"width": "640", "height": "480"}, None),
        ([], None),
    ],
)
def test_image_size_reads_positive_numbers_only(data: Any, size: tuple[float, float] | None) -> None:
    assert image_size(data) == size


def test_label_sets_need_no_image_but_geometry_does() -> None:
    check_item_data(LABELS, {"text": "a street"}, "0")
    with pytest.raises(Invalid) as caught:
        check_item_data(BOX, {"image_url": "x.jpg"}, "7")
    assert caught.value.message.startswith("7.data.width: items of a bbox job need the image's width and height")
