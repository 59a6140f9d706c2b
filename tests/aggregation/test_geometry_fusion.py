"""aggregate_objects: fused boxes, polygons, keypoints and label sets with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from frames_geometry import ALL_EMPTY, L_SHAPE, SQUARE, answers, boxes, synthetic_boxes

from aggregation.geometry import aggregate_objects, check_values, score_answer
from aggregation.geometry.boxes import BoxKind
from aggregation.geometry.clustering import cluster_objects
from aggregation.geometry.fusion import build, fuse
from aggregation.geometry.keypoints import weighted_median
from aggregation.geometry.polygons import majority_region

SPEC = {"labels": ["person"]}


def mean_score(result_values: pd.Series, truth: pd.Series) -> float:
    return float(np.mean([score_answer("bbox", result_values[t], truth[t], SPEC) for t in result_values.index]))


def test_noisy_crowd_with_a_spammer() -> None:
    frame, truth = synthetic_boxes(n_images=40, seed=1)
    result = aggregate_objects("bbox", frame, SPEC)
    assert len(result) == 40
    assert mean_score(result.values, truth) > 0.93
    # Every true box found, none of the spammer's kept.
    found = [len(result.values[t]["objects"]) == len(truth[t]["objects"]) for t in truth.index]
    assert all(found)
    assert result.skills.idxmin() == "spammer"
    assert result.skills["spammer"] < 0.3 < result.skills.drop("spammer").min()
    obj = result.values["img000"]["objects"][0]
    assert set(obj) == {"label", "bbox", "score", "n"}
    assert obj["n"] == 4 and 0.5 <= obj["score"] <= 1.0
    assert result.method == "box_fusion" and result.version.startswith("box_fusion@geometry1+shapely")
    assert (result.answers_used == 5).all()


def test_better_than_any_single_worker_and_the_median() -> None:
    frame, truth = synthetic_boxes(n_images=60, seed=2, good=3, noise=0.06, spammer=False)
    fused = mean_score(aggregate_objects("bbox", frame, SPEC).values, truth)
    for worker, own in frame.groupby("worker"):
        alone = mean_score(pd.Series(list(own["value"]), index=own["task"]), truth)
        assert fused > alone + 0.02, worker


def test_habits_are_learnt_from_golden_boxes() -> None:
    # Every worker draws right edges 15% of the width too far: agreement alone cannot see it,
    # golden boxes can, and undoing it brings the fused boxes to the truth.
    frame, truth = synthetic_boxes(n_images=60, seed=3, good=0, spammer=False, habit=0.15, habit_workers=3)
    golden = truth.iloc[:6]
    real = truth.iloc[6:]
    learnt = aggregate_objects("bbox", frame, SPEC, golden=golden)
    blind = aggregate_objects("bbox", frame, {**SPEC, "learn_habits": False}, golden=golden)
    assert not set(golden.index) & set(learnt.values.index)
    assert mean_score(learnt.values, real) > 0.92
    assert mean_score(learnt.values, real) > mean_score(blind.values, real) + 0.05


def test_noise_levels_are_learnt_without_flattering_anyone() -> None:
    # One sharp worker (noise 2% of the size per edge) and three blurry ones (5%), all on every
    # image. Judged against a consensus holding its own box, the sharp one would look sharper
    # still and take over; against the others' consensus alone it would look blurrier than it
    # is unless that consensus' own error is discounted. Both wrong ways miss by over 25%.
    _, truth = synthetic_boxes(n_images=80, seed=6, spammer=False)
    rng = np.random.default_rng(6)
    noise = {"sharp": 0.02, "blurry1": 0.05, "blurry2": 0.05, "blurry3": 0.05}
    frame = answers(
        [
            (task, worker, boxes(*[tuple(jitter(o["bbox"], level, rng)) for o in value["objects"]]))
            for task, value in truth.items()
            for worker, level in noise.items()
        ]
    )
    model = BoxKind(len(noise))
    objects, layout = build(model, check_values("bbox", frame), {}, {}, 0.5)
    fuse(model, objects, layout, 0.5, ["person"])
    learnt = dict(zip(layout.workers, model.noise.mean(1), strict=True))
    for worker, true in noise.items():
        assert learnt[worker] == pytest.approx(true, rel=0.25), worker


def jitter(xywh: list[float], noise: float, rng: np.random.Generator) -> np.ndarray:
    """A box with Gaussian noise of `noise` x its size on each edge."""
    x, y, w, h = xywh
    x1, x2 = np.array([x, x + w]) + rng.normal(0, noise * w, 2)
    y1, y2 = np.array([y, y + h]) + rng.normal(0, noise * h, 2)
    return np.round([x1, y1, x2 - x1, y2 - y1], 2)


def test_empty_answers_are_answers() -> None:
    result = aggregate_objects("bbox", ALL_EMPTY, SPEC)
    assert result.values.to_dict() == {"t1": {"objects": []}}
    assert result.confidence["t1"] == 1.0
    assert result.answers_used["t1"] == 3


def test_a_box_drawn_by_one_of_three_is_dropped_and_a_missing_answer_is_not_counted() -> None:
    frame = answers(
        [
            ("t1", "a", boxes((10, 10, 50, 50))),
            ("t1", "b", boxes()),
            ("t1", "c", boxes()),
            ("t1", "d", None),  # no answer at all
            ("t2", "a", boxes((10, 10, 50, 50))),
            ("t2", "b", boxes((11, 10, 50, 50))),
            ("t2", "c", boxes()),
        ]
    )
    result = aggregate_objects("bbox", frame, SPEC)
    assert result.values["t1"] == {"objects": []}
    assert result.answers_used.to_dict() == {"t1": 3, "t2": 3}
    (kept,) = result.values["t2"]["objects"]
    assert kept["n"] == 2 and kept["bbox"][1:] == [10.0, 50.0, 50.0]
    assert 10.0 <= kept["bbox"][0] <= 11.0
    assert 0.5 <= result.confidence["t2"] < 1.0


def test_label_is_voted_and_ties_follow_the_spec_order() -> None:
    frame = answers(
        [
            ("t1", "a", boxes((0, 0, 10, 10), label="car")),
            ("t1", "b", boxes((0, 0, 10, 10), label="van")),
            ("t2", "a", boxes((0, 0, 10, 10), label="van")),
            ("t2", "b", boxes((0, 0, 10, 10), label="van")),
            ("t2", "c", boxes((0, 0, 10, 10), label="car")),
        ]
    )
    spec = {"labels": ["van", "car"]}
    result = aggregate_objects("bbox", frame, spec)
    assert [o["label"] for o in result.values["t2"]["objects"]] == ["van"]
    assert [o["label"] for o in result.values["t1"]["objects"]] == ["van"]


def test_row_order_does_not_matter() -> None:
    frame, _ = synthetic_boxes(n_images=15, seed=4)
    one = aggregate_objects("bbox", frame, SPEC)
    other = aggregate_objects("bbox", frame.sample(frac=1.0, random_state=7), SPEC)
    assert one.values.to_dict() == other.values.to_dict()
    pd.testing.assert_series_equal(one.skills, other.skills)


def test_boxes_are_clipped_to_the_image() -> None:
    frame = answers([("t1", "a", boxes((90, 10, 20, 20))), ("t1", "b", boxes((91, 10, 20, 20)))])
    sizes = pd.DataFrame({"width": [100], "height": [100]}, index=["t1"])
    (obj,) = aggregate_objects("bbox", frame, SPEC, sizes=sizes).values["t1"]["objects"]
    assert obj["bbox"][0] + obj["bbox"][2] <= 100.0


def test_bad_frames_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="columns"):
        aggregate_objects("bbox", pd.DataFrame({"task": ["t"], "worker": ["w"]}), SPEC)
    with pytest.raises(ValueError, match="'objects' list"):
        aggregate_objects("bbox", answers([("t", "w", {"labels": []})]), SPEC)
    with pytest.raises(ValueError, match="aggregation.aggregate"):
        aggregate_objects("classification", answers([("t", "w", {"label": "x"})]), SPEC)
    assert len(aggregate_objects("bbox", answers([]), SPEC)) == 0


# ---- polygons -------------------------------------------------------------------------------


def test_majority_region_of_three_squares() -> None:
    squares = [shapely.box(x, 0, x + 10, 10) for x in (0, 2, 4)]
    region = majority_region(squares, np.ones(3))
    assert region.equals(shapely.box(2, 0, 12, 10))
    # A heavy first member pulls the region its way.
    assert majority_region(squares, np.array([3.0, 1.0, 1.0])).equals(shapely.box(0, 0, 10, 10))


def polygon_answer(points: list[list[float]], label: str = "roof") -> dict[str, object]:
    return {"objects": [{"label": label, "points": points}]}


def test_fused_polygons_are_valid_and_close() -> None:
    rng = np.random.default_rng(5)
    shapes = {"square": np.asarray(SQUARE) * 5 + 20, "ell": np.asarray(L_SHAPE) * 6 + 10}
    rows = []
    for name, shape in shapes.items():
        for worker in ("a", "b", "c", "d"):
            rows.append((name, worker, polygon_answer((shape + rng.normal(0, 1.0, shape.shape)).round(2).tolist())))
        rows.append((name, "spammer", polygon_answer(rng.uniform(72, 100, (5, 2)).round(2).tolist())))
    sizes = pd.DataFrame({"width": [100, 100], "height": [100, 100]}, index=list(shapes))
    result = aggregate_objects("polygon", answers(rows), {"labels": ["roof"], "max_vertices": 12}, sizes=sizes)
    for name, shape in shapes.items():
        (obj,) = result.values[name]["objects"]
        ring = shapely.Polygon(obj["points"])
        assert ring.is_valid and ring.area > 0
        assert 3 <= len(obj["points"]) <= 12
        assert shapely.box(0, 0, 100, 100).contains(ring)
        assert score_answer("polygon", result.values[name], polygon_answer(shape.tolist()), {}) > 0.85
        assert obj["n"] == 4
    assert result.method == "polygon_fusion"


def test_three_workers_drawing_two_parts_fuse_into_two_parts() -> None:
    left, right = np.asarray(SQUARE) * 4 + 10, np.asarray(L_SHAPE) * 5 + [60, 10]  # a car split by a pole
    rng = np.random.default_rng(7)
    rows = []
    for worker in ("a", "b", "c"):
        drawn = [(shape + rng.normal(0, 0.8, shape.shape)).round(2).tolist() for shape in (left, right)]
        rows.append(("car", worker, {"objects": [{"label": "roof", "polygons": drawn}]}))
    rows.append(("one", "a", polygon_answer(left.tolist())))  # a single ring stays one
    sizes = pd.DataFrame({"width": [200, 200], "height": [100, 100]}, index=["car", "one"])
    result = aggregate_objects("polygon", answers(rows), {"labels": ["roof"]}, sizes=sizes)
    (obj,) = result.values["car"]["objects"]
    assert set(obj) == {"label", "polygons", "score", "n"} and obj["n"] == 3
    fused = [shapely.Polygon(ring) for ring in obj["polygons"]]
    assert len(fused) == 2 and all(part.is_valid and part.area > 0 for part in fused)
    assert not fused[0].intersection(fused[1]).area
    truth = {"objects": [{"label": "roof", "polygons": [left.tolist(), right.tolist()]}]}
    assert score_answer("polygon", result.values["car"], truth, {}) > 0.9
    assert set(result.values["one"]["objects"][0]) == {"label", "points", "score", "n"}


def test_a_two_part_object_against_single_rings_follows_the_majority() -> None:
    left, right = box_ring(0, 0, 40, 40), box_ring(60, 0, 30, 40)
    rows = [("car", "a", {"objects": [{"label": "roof", "polygons": [left, right]}]})]
    rows += [("car", w, polygon_answer(left)) for w in ("b", "c")]  # two of three saw one part only
    result = aggregate_objects("polygon", answers(rows), {"labels": ["roof"]})
    (obj,) = result.values["car"]["objects"]
    assert "points" in obj and shapely.Polygon(obj["points"]).equals(shapely.Polygon(left))


def box_ring(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


# ---- keypoints ------------------------------------------------------------------------------


def test_weighted_median_per_group() -> None:
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    values = np.array([5.0, 1.0, 3.0, 10.0, 20.0, 1.0, 2.0, 100.0])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 5.0])
    # Group 0: plain median 3; group 1: an exact split, the midpoint 15; group 2: the heavy
    # value wins; group 3 has nothing.
    result = weighted_median(groups, values, weights, 4)
    assert result[:3].tolist() == [3.0, 15.0, 100.0]
    assert np.isnan(result[3])


def test_keypoints_weighted_median_and_visibility_vote() -> None:
    spec = {"labels": ["person"], "points": ["head", "hand", "foot"]}

    def kp(*points: tuple[float, float, int]) -> dict[str, object]:
        return {"objects": [{"label": "person", "keypoints": [list(p) for p in points]}]}

    frame = answers(
        [
            ("t1", "a", kp((100, 100, 2), (150, 200, 2), (120, 400, 2))),
            ("t1", "b", kp((102, 100, 2), (152, 200, 1), (0, 0, 0))),
            ("t1", "c", kp((130, 100, 2), (151, 200, 1), (0, 0, 0))),
        ]
    )
    result = aggregate_objects("keypoints", frame, {**spec, "sigmas": [0.5, 0.5, 0.5]})
    (person,) = result.values["t1"]["objects"]
    head, hand, foot = person["keypoints"]
    assert head == [102.0, 100.0, 2]  # the median, not the mean (110.7)
    assert hand == [151.0, 200.0, 1]  # occluded by 2 votes to 1
    assert foot == [0.0, 0.0, 0]  # labelled by 1 of 3: left out
    assert person["n"] == 3
    assert result.method == "keypoint_fusion"


# ---- multi-label ----------------------------------------------------------------------------


def test_multilabel_learns_from_golden_tasks() -> None:
    good = {"t0": ["cat"], "t1": ["cat", "dog"], "t2": [], "t3": ["dog"], "t4": ["cat"]}
    bad = {t: sorted({"cat", "dog"} - set(v)) for t, v in good.items()}
    rows = [(t, "good", {"labels": v}) for t, v in good.items()] + [(t, "bad", {"labels": v}) for t, v in bad.items()]
    golden = pd.Series({"t0": {"labels": ["cat"]}, "t1": {"labels": ["cat", "dog"]}})
    result = aggregate_objects("multilabel", answers(rows), {"labels": ["dog", "cat", "bird"]}, golden=golden)
    assert result.values.to_dict() == {"t2": {"labels": []}, "t3": {"labels": ["dog"]}, "t4": {"labels": ["cat"]}}
    assert result.skills["good"] == 1.0 and result.skills["bad"] == 0.0
    assert result.method.startswith("binary_relevance")
    assert (result.answers_used == 2).all()


# ---- clustering -----------------------------------------------------------------------------


def test_clusters_prefer_the_same_label_on_near_ties() -> None:
    # Worker a drew a person (0) and a bicycle (1) overlapping; worker b's person (2) is a
    # shade closer to a's bicycle, and b's bicycle (3) to a's person.
    similarity = np.array(
        [
            [1.0, 0.6, 0.70, 0.72],
            [0.6, 1.0, 0.72, 0.70],
            [0.70, 0.72, 1.0, 0.6],
            [0.72, 0.70, 0.6, 1.0],
        ]
    )
    owner = np.array([0, 0, 1, 1])
    clusters = cluster_objects(similarity, owner, ["person", "bicycle", "person", "bicycle"], 0.5)
    assert clusters.tolist() == [0, 1, 0, 1]
    # With one label everywhere the higher similarity wins, one object per worker per cluster.
    assert cluster_objects(similarity, owner, ["x"] * 4, 0.5).tolist() == [0, 1, 1, 0]


def test_gold_objects_seed_clusters_and_judge_alone() -> None:
    # Gold g (0); worker a's box (1) matches it; worker b's box (2) is close to a's but not to
    # the gold: it starts a cluster of its own rather than joining through a.
    similarity = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.9], [0.3, 0.9, 1.0]])
    clusters = cluster_objects(similarity, np.array([-1, 0, 1]), ["p"] * 3, 0.5, n_gold=1)
    assert clusters.tolist() == [0, 0, 1]
