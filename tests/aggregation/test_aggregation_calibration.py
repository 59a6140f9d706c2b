"""Temperature scaling, held-out answers and the calibration yardstick."""

from __future__ import annotations

import numpy as np
import pytest

from aggregation import dawid_skene as ds
from aggregation.calibration import expected_calibration_error, fit_temperature
from aggregation.crowds import sparse
from aggregation.encode import encode
from aggregation.heldout import answer_folds, predict_hidden, scored_folds, temper


def test_expected_calibration_error_by_hand() -> None:
    # bin 0.9: confidence .95 twice, one hit -> |0.5 - 0.95| * 2/4; bin 0.6: .6 twice, both hit
    conf = np.array([0.95, 0.95, 0.6, 0.6])
    hit = np.array([1.0, 0.0, 1.0, 1.0])
    assert expected_calibration_error(conf, hit) == pytest.approx(0.45 * 0.5 + 0.4 * 0.5)


def test_temper_keeps_the_winner_and_softens() -> None:
    probas = np.array([[0.98, 0.01, 0.01], [0.2, 0.5, 0.3]])
    soft = temper(probas, 3.0)
    assert (soft.argmax(axis=1) == probas.argmax(axis=1)).all()
    assert soft[0, 0] < 0.98 and np.allclose(soft.sum(axis=1), 1.0)
    assert temper(probas, 1.0) is probas


def test_fit_temperature_recovers_an_overconfident_model() -> None:
    """Posteriors that are right 80% of the time but claim ~98.5% (calibrated ones raised to
    the power 3): the fitted temperature undoes it."""
    rng = np.random.default_rng(0)
    n = 4000
    truth = rng.integers(0, 2, size=n)
    right = rng.random(n) < 0.8
    chosen = np.where(right, truth, 1 - truth)
    calibrated = np.full((n, 2), 0.2)
    calibrated[np.arange(n), chosen] = 0.8
    sharp = temper(calibrated, 1 / 3)
    assert fit_temperature(sharp, truth, 1.0, prior_sd=10.0) == pytest.approx(3.0, rel=0.1)


def test_few_golden_tasks_stay_near_the_prior_temperature() -> None:
    probas = np.array([[0.999, 0.001]] * 3)
    truth = np.zeros(3, dtype=np.int64)
    assert fit_temperature(probas, truth, 5.0) > 3.0
    assert fit_temperature(probas[:0], truth[:0], 5.0) == 5.0


def test_folds_are_balanced_and_fixed() -> None:
    folds = answer_folds(1003)
    assert np.bincount(folds).tolist() == [201, 201, 201, 200, 200]
    assert (folds == answer_folds(1003)).all()
    assert scored_folds(folds, 10_000) == [0, 1, 2, 3, 4]
    assert scored_folds(answer_folds(100_000), 10_000) == [0]


def test_held_out_answers_prefer_one_skill_per_worker_on_sparse_workers() -> None:
    """Workers with 1-5 answers: a confusion matrix each predicts their next answer worse
    than one skill each, without looking at the truth."""
    answers, _ = sparse(0)
    enc = encode(answers)
    folds = answer_folds(len(enc.t))
    near_full = predict_hidden(enc, ds.Shrinkage(0.5, 2.0), folds).best()[0]
    one_coin = predict_hidden(enc, ds.Shrinkage(np.inf, 2.0), folds).best()[0]
    assert one_coin > near_full + 0.05
