"""The numpy Dawid-Skene matches crowd-kit's, and scales the way it should."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene, OneCoinDawidSkene

from aggregation import aggregate
from aggregation.synthetic import simulate


def _crowdkit(model: DawidSkene, answers: pd.DataFrame, **kwargs: object) -> DawidSkene:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return model.fit(answers, **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_and_posteriors_match_crowdkit(seed: int) -> None:
    answers, truth = simulate(300, 12, 3, 4, seed=seed, spammers=0.2)
    ours = aggregate(answers, "dawid_skene")
    theirs = _crowdkit(DawidSkene(), answers)
    pd.testing.assert_series_equal(ours.labels, theirs.labels_.reindex(ours.labels.index), check_names=False)
    expected = theirs.probas_.max(axis=1).reindex(ours.labels.index).to_numpy()
    np.testing.assert_allclose(ours.confidence.to_numpy(), expected, atol=1e-6)


def test_golden_clamping_matches_crowdkit_true_labels() -> None:
    answers, truth = simulate(300, 10, 2, 3, seed=5, spammers=0.3)
    golden = truth.iloc[::10]
    ours = aggregate(answers, "dawid_skene", golden=golden)
    theirs = _crowdkit(DawidSkene(), answers, true_labels=golden).labels_
    assert not ours.labels.index.isin(golden.index).any()
    pd.testing.assert_series_equal(ours.labels, theirs.reindex(ours.labels.index), check_names=False)


def test_one_coin_matches_crowdkit() -> None:
    answers, _ = simulate(200, 10, 3, 4, seed=7)
    ours = aggregate(answers, "one_coin_dawid_skene")
    theirs = _crowdkit(OneCoinDawidSkene(), answers).labels_
    pd.testing.assert_series_equal(ours.labels, theirs.reindex(ours.labels.index), check_names=False)


def test_dawid_skene_beats_majority_vote_with_spammers() -> None:
    answers, truth = simulate(1000, 20, 4, 5, seed=11, spammers=0.4)
    ds = aggregate(answers, "dawid_skene")
    mv = aggregate(answers, "majority_vote")
    ds_acc = (ds.labels == truth.loc[ds.labels.index]).mean()
    mv_acc = (mv.labels == truth.loc[mv.labels.index]).mean()
    assert ds_acc > mv_acc + 0.03
    assert ds_acc > 0.85
