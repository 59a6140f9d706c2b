"""Agreement figures and the dynamic-overlap stop rule for annotation answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from frames_geometry import answers, boxes

from aggregation.geometry import answers_agree, job_agreement, mean_pairwise_similarity, worker_agreement

SPEC = {"labels": ["person"]}


def test_mean_pairwise_iou_of_matched_boxes() -> None:
    # Pairs: (a, b) IoU 0.6; (a, c) and (b, c) do not match at 0.5 (c is elsewhere).
    values = [boxes((0, 0, 10, 10)), boxes((0, 0, 10, 6)), boxes((50, 50, 10, 10))]
    assert mean_pairwise_similarity("bbox", values, SPEC) == pytest.approx(0.6)
    assert math.isnan(mean_pairwise_similarity("bbox", values[:1], SPEC))
    assert mean_pairwise_similarity("multilabel", [{"labels": ["a", "b"]}, {"labels": ["a"]}], {}) == 0.5


def test_answers_agree() -> None:
    close = [boxes((0, 0, 100, 100), (200, 0, 50, 50)), boxes((2, 1, 100, 100), (201, 0, 50, 50))]
    assert answers_agree("bbox", close, SPEC)
    assert not answers_agree("bbox", close[:1], SPEC)  # one answer is never enough
    # Another object count, a loose match, or another label: ask more.
    assert not answers_agree("bbox", [close[0], boxes((0, 0, 100, 100))], SPEC)
    loose = [boxes((0, 0, 100, 100)), boxes((0, 0, 100, 70))]
    assert not answers_agree("bbox", loose, SPEC)
    assert answers_agree("bbox", loose, SPEC, target=0.65)
    assert not answers_agree("bbox", [boxes((0, 0, 10, 10)), boxes((0, 0, 10, 10), label="car")], SPEC)
    # Same count but not one-to-one: the second answer's box is elsewhere.
    assert not answers_agree("bbox", [boxes((0, 0, 10, 10)), boxes((500, 0, 10, 10))], SPEC)
    assert answers_agree("bbox", [boxes(), boxes(), boxes()], SPEC)
    assert answers_agree("classification", [{"label": "x"}, {"label": "x"}], {})
    assert not answers_agree("multilabel", [{"labels": ["a", "b"]}, {"labels": ["a"]}], {})


def test_job_and_worker_agreement() -> None:
    frame = answers(
        [
            ("t1", "a", boxes((0, 0, 10, 10))),
            ("t1", "b", boxes((0, 0, 10, 6))),
            ("t2", "a", boxes()),
            ("t2", "b", boxes()),
            ("t3", "a", boxes((0, 0, 10, 10))),
        ]
    )
    # t1 has one matched pair (0.6); t2's pair matches nothing to nothing; t3 has one answer.
    assert job_agreement("bbox", frame, SPEC) == pytest.approx(0.6)
    fused = pd.Series({"t1": boxes((0, 0, 10, 10)), "t2": boxes()})
    agreement = worker_agreement("bbox", frame, fused, SPEC)
    assert agreement.to_dict() == pytest.approx({"a": 1.0, "b": 0.8})
