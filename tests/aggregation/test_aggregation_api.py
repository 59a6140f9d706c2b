"""aggregate(): every method on the named edge-case frames, with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from frames_aggregation import (
    DIGITS,
    DISAGREE_GOLDEN,
    DISAGREE_TRUTH,
    DISAGREE_WITH_GOLDEN,
    NO_OVERLAP,
    SINGLE_CLASS,
    SINGLE_WORKER,
    TIE,
)

from aggregation import METHODS, AggregationResult, __version__, aggregate

ALL = list(METHODS)
FAST = [m for m in METHODS if m != "glad"]  # GLAD takes seconds even on tiny frames


@pytest.mark.parametrize("method", ["dawid_skene", "majority_vote", "auto"])
def test_golden_decides_between_two_disagreeing_workers(method: str) -> None:
    result = aggregate(DISAGREE_WITH_GOLDEN, method, golden=DISAGREE_GOLDEN)
    assert "g" not in result.labels.index
    pd.testing.assert_series_equal(
        result.labels.sort_index(),
        DISAGREE_TRUTH.rename("label"),
        check_index_type=False,
        check_names=False,
    )


def test_dawid_skene_clamps_golden_with_confident_posteriors() -> None:
    result = aggregate(DISAGREE_WITH_GOLDEN, "dawid_skene", golden=DISAGREE_GOLDEN)
    assert (result.confidence > 0.9).all()
    assert result.answers_used.to_dict() == {"t0": 2, "t1": 2, "t2": 2, "t3": 2}


def test_without_golden_the_tie_goes_to_the_first_label() -> None:
    result = aggregate(TIE, "majority_vote")
    assert result.labels.to_dict() == {"t1": "a", "t2": "a"}  # lexicographic: a < b
    assert result.confidence.to_dict() == {"t1": 0.5, "t2": 1.0}
    reordered = aggregate(TIE, "majority_vote", labels=["b", "a"])
    assert reordered.labels["t1"] == "b"


def test_golden_skill_breaks_a_tie_before_label_order() -> None:
    answers = pd.concat([TIE, pd.DataFrame({"task": ["g"] * 2, "worker": ["w1", "w2"], "label": ["b", "a"]})])
    result = aggregate(answers, "majority_vote", golden=pd.Series({"g": "b"}))
    assert result.labels["t1"] == "b"  # w1 got the golden task right


@pytest.mark.parametrize("method", FAST)
def test_single_worker_is_taken_at_its_word(method: str) -> None:
    result = aggregate(SINGLE_WORKER, method)
    assert result.labels.to_dict() == {"t1": "x", "t2": "y", "t3": "x"}


@pytest.mark.parametrize("method", ALL)
def test_single_class_is_certain(method: str) -> None:
    result = aggregate(SINGLE_CLASS, method)
    assert result.labels.to_dict() == {"t1": "x", "t2": "x"}
    assert result.confidence.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("method", [m for m in FAST if m != "dawid_skene"])
def test_workers_without_overlap_keep_their_answers(method: str) -> None:
    result = aggregate(NO_OVERLAP, method, labels=["a", "b", "c"])
    assert result.labels.to_dict() == {"t1": "a", "t2": "b", "t3": "a", "t4": "c"}


def test_plain_dawid_skene_falls_back_on_the_prior_without_overlap() -> None:
    """Like crowd-kit's: a worker seen on one task carries no information, so the commonest
    class wins everywhere. This is why "auto" uses majority vote on thin data."""
    result = aggregate(NO_OVERLAP, "dawid_skene", labels=["a", "b", "c"])
    assert set(result.labels) == {"a"}
    assert aggregate(NO_OVERLAP).method == "auto:majority_vote"


@pytest.mark.parametrize("method", ALL)
def test_empty_answers_give_an_empty_typed_result(method: str) -> None:
    empty = pd.DataFrame({"task": [], "worker": [], "label": []}, dtype=str)
    result = aggregate(empty, method)
    assert isinstance(result, AggregationResult)
    assert len(result) == 0
    assert result.confidence.dtype == np.float64
    assert result.answers_used.dtype == np.int64
    assert result.method == method


@pytest.mark.parametrize("method", FAST)
def test_digit_labels_stay_strings(method: str) -> None:
    result = aggregate(DIGITS, method)
    assert result.labels.to_dict() == {"1": "2", "2": "10"}
    assert all(isinstance(v, str) for v in result.labels)
    assert all(isinstance(v, str) for v in result.labels.index)


def test_integer_columns_are_read_as_strings() -> None:
    answers = pd.DataFrame({"task": [1, 1, 2], "worker": [7, 8, 7], "label": [3, 3, 4]})
    result = aggregate(answers, "majority_vote")
    assert result.labels.to_dict() == {"1": "3", "2": "4"}


def test_only_golden_answers_give_an_empty_result() -> None:
    answers = DISAGREE_WITH_GOLDEN[DISAGREE_WITH_GOLDEN.task == "g"]
    assert len(aggregate(answers, golden=DISAGREE_GOLDEN)) == 0


def test_result_records_method_and_version() -> None:
    result = aggregate(DIGITS, "dawid_skene")
    assert result.method == "dawid_skene"
    assert result.version.startswith(f"dawid_skene@{__version__}+crowdkit")
    assert aggregate(DIGITS).method.startswith("auto:")


def test_unknown_method_and_missing_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown aggregation method"):
        aggregate(DIGITS, "median")
    with pytest.raises(ValueError, match="lacks column"):
        aggregate(DIGITS.drop(columns="worker"))


@pytest.mark.parametrize("method", FAST)
def test_row_order_does_not_change_anything(method: str) -> None:
    from aggregation.synthetic import simulate

    answers, truth = simulate(30, 6, 3, 3, seed=3)
    golden = truth.iloc[:3]
    first = aggregate(answers, method, golden=golden)
    shuffled = aggregate(answers.sample(frac=1.0, random_state=1), method, golden=golden)
    pd.testing.assert_series_equal(first.labels, shuffled.labels)
    pd.testing.assert_series_equal(first.confidence, shuffled.confidence, check_exact=True)
    assert first.method == shuffled.method
