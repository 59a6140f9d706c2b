"""score_answer: each annotation kind against gold, with answers worked out by hand."""

from __future__ import annotations

import math

import pytest
from frames_geometry import BOW_TIE, HUNGARIAN_ANSWER, HUNGARIAN_GOLD, LEFT_HALF, SQUARE, boxes

from aggregation.geometry import score_answer


def polygons(*rings: list[list[float]], label: str = "roof") -> dict[str, object]:
    return {"objects": [{"label": label, "points": r} for r in rings]}


def person(*points: tuple[float, float, int]) -> dict[str, object]:
    return {"objects": [{"label": "person", "keypoints": [list(p) for p in points]}]}


def test_identical_boxes_score_one() -> None:
    gold = boxes((10, 10, 50, 80), (100, 20, 30, 30))
    assert score_answer("bbox", gold, gold, {}) == 1.0


def test_box_score_is_f1_times_mean_iou() -> None:
    # IoU of [0,0,10,10] and [0,0,10,6] is 60/100; one extra box halves nothing but F1.
    assert score_answer("bbox", boxes((0, 0, 10, 6)), boxes((0, 0, 10, 10)), {}) == pytest.approx(0.6)
    extra = boxes((0, 0, 10, 10), (200, 200, 10, 10))
    assert score_answer("bbox", extra, boxes((0, 0, 10, 10)), {}) == pytest.approx(2 / 3)


def test_a_pair_below_the_threshold_does_not_match() -> None:
    # IoU 50/150 = 1/3 < 0.5: no match, score 0; with iou_threshold 0.3 it matches.
    assert score_answer("bbox", boxes((5, 0, 10, 10)), boxes((0, 0, 10, 10)), {}) == 0.0
    assert score_answer("bbox", boxes((5, 0, 10, 10)), boxes((0, 0, 10, 10)), {"iou_threshold": 0.3}) == pytest.approx(
        1 / 3
    )
    assert score_answer("bbox", boxes((0, 0, 10, 6)), boxes((0, 0, 10, 10)), {"iou_threshold": 0.7}) == 0.0


def test_hungarian_beats_greedy_matching() -> None:
    # Greedy would take the best pair (IoU 9/11) and leave one box unmatched: 0.5 * 9/11.
    assert score_answer("bbox", HUNGARIAN_ANSWER, HUNGARIAN_GOLD, {}) == pytest.approx(2 / 3)


def test_labels_must_match() -> None:
    assert score_answer("bbox", boxes((0, 0, 10, 10), label="car"), boxes((0, 0, 10, 10)), {}) == 0.0


def test_empty_answers() -> None:
    assert score_answer("bbox", boxes(), boxes(), {}) == 1.0
    assert score_answer("bbox", boxes(), boxes((0, 0, 10, 10)), {}) == 0.0
    assert score_answer("bbox", boxes((0, 0, 10, 10)), boxes(), {}) == 0.0
    assert score_answer("polygon", {"objects": []}, {"objects": []}, {}) == 1.0


def test_polygon_iou() -> None:
    assert score_answer("polygon", polygons(LEFT_HALF), polygons(SQUARE), {}) == pytest.approx(0.5)
    assert score_answer("polygon", polygons(SQUARE), polygons(SQUARE), {}) == pytest.approx(1.0)


def test_self_intersecting_polygon_is_repaired_not_an_error() -> None:
    # The bow tie's two triangles cover half the square.
    assert score_answer("polygon", polygons(BOW_TIE), polygons(SQUARE), {}) == pytest.approx(0.5)


def test_keypoints_by_oks() -> None:
    spec = {"points": ["nose", "left_shoulder"]}
    gold = person((0, 0, 2), (30, 40, 2))
    assert score_answer("keypoints", gold, gold, spec) == pytest.approx(1.0)
    # Area from the gold's keypoints: 30 x 40; the nose 5 px off with COCO's sigma 0.026.
    nose = math.exp(-25 / (2 * 1200 * (2 * 0.026) ** 2))
    assert score_answer("keypoints", person((3, 4, 2), (30, 40, 2)), gold, spec) == pytest.approx((nose + 1) / 2)
    # Per-point sigmas from the spec replace COCO's.
    loose = math.exp(-25 / (2 * 1200 * (2 * 0.1) ** 2))
    spec_sigmas = {**spec, "sigmas": [0.1, 0.1]}
    off = person((3, 4, 2), (30, 40, 2))
    assert score_answer("keypoints", off, gold, spec_sigmas) == pytest.approx((loose + 1) / 2)


def test_keypoints_unlabelled_points() -> None:
    spec = {"points": ["left_hip", "right_hip", "nose"]}
    gold = person((0, 0, 2), (30, 40, 1), (10, 10, 0))
    # A point the gold leaves unlabelled is ignored; one the answer leaves out counts 0.
    assert score_answer("keypoints", person((0, 0, 2), (30, 40, 2), (99, 99, 2)), gold, spec) == pytest.approx(1.0)
    half = person((0, 0, 2), (0, 0, 0), (0, 0, 0))
    assert score_answer("keypoints", half, gold, spec) == pytest.approx(0.5)
    # Below the OKS threshold (0.5 by default) the person is not matched at all.
    assert score_answer("keypoints", half, gold, {**spec, "oks_threshold": 0.6}) == 0.0


def test_multilabel_by_jaccard() -> None:
    assert score_answer("multilabel", {"labels": ["cat", "dog"]}, {"labels": ["dog"]}, {}) == pytest.approx(0.5)
    assert score_answer("multilabel", {"labels": []}, {"labels": []}, {}) == 1.0
    assert score_answer("multilabel", {"labels": []}, {"labels": ["dog"]}, {}) == 0.0


def test_classification() -> None:
    assert score_answer("classification", {"label": "cat"}, {"label": "cat"}, {}) == 1.0
    assert score_answer("classification", {"label": "cat"}, {"label": "dog"}, {}) == 0.0


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown annotation kind 'mask'"):
        score_answer("mask", {}, {}, {})


# ---- objects in several polygons ------------------------------------------------------------

BIG_PART = [[0, 0], [60, 0], [60, 10], [0, 10]]  # 600 px^2
SMALL_PART = [[100, 0], [140, 0], [140, 10], [100, 10]]  # 400 px^2: 40 % of the object


def parts(*rings: list[list[float]], label: str = "car") -> dict[str, object]:
    return {"objects": [{"label": label, "polygons": list(rings)}]}


def test_an_object_in_two_parts_scores_by_the_union_of_its_parts() -> None:
    gold = parts(BIG_PART, SMALL_PART)
    assert score_answer("polygon", parts(SMALL_PART, BIG_PART), gold, {}) == pytest.approx(1.0)
    # One part of two: IoU = the part's share of the object, a match at 0.6 but not at 0.4.
    assert score_answer("polygon", parts(BIG_PART), gold, {}) == pytest.approx(0.6)
    assert score_answer("polygon", polygons(BIG_PART, label="car"), gold, {}) == pytest.approx(0.6)
    assert score_answer("polygon", parts(SMALL_PART), gold, {}) == 0.0
    assert score_answer("polygon", parts(SMALL_PART), gold, {"iou_threshold": 0.3}) == pytest.approx(0.4)


def test_two_parts_that_touch_are_the_same_object_as_one_ring() -> None:
    halves = parts([[0, 0], [5, 0], [5, 10], [0, 10]], [[5, 0], [10, 0], [10, 10], [5, 10]])
    assert score_answer("polygon", halves, polygons(SQUARE, label="car"), {}) == pytest.approx(1.0)
