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


def test_shrinkage_spans_full_and_one_coin() -> None:
    from aggregation import dawid_skene as ds
    from aggregation.encode import encode

    answers, _ = simulate(400, 12, 3, 4, seed=3, spammers=0.2)
    enc = encode(answers)
    one_coin = ds.fit(enc, one_coin=True)
    infinite = ds.fit(enc, prior=ds.Shrinkage(np.inf, 0.0))
    np.testing.assert_allclose(infinite.probas, one_coin.probas)
    huge = ds.fit(enc, prior=ds.Shrinkage(1e9, 0.0))
    np.testing.assert_allclose(huge.errors, one_coin.errors, atol=1e-5)
    light = ds.fit(enc, prior=ds.Shrinkage(1e-3, 0.0))
    assert (light.probas.argmax(axis=1) == ds.fit(enc).probas.argmax(axis=1)).mean() > 0.99


def test_skill_prior_pulls_a_worker_seen_twice_toward_the_crowd() -> None:
    from aggregation import dawid_skene as ds
    from aggregation.encode import encode

    answers, _ = simulate(300, 10, 2, 3, seed=1)
    newcomer = pd.DataFrame({"task": ["t0", "t1"], "worker": ["new", "new"], "label": ["1", "1"]})
    enc = encode(pd.concat([answers, newcomer]))
    w = enc.workers.get_loc("new")
    skills = {a: ds.fit(enc, prior=ds.Shrinkage(np.inf, a)).errors[:, 0, 0] for a in (0.0, 8.0)}
    crowd = np.median(np.delete(skills[0.0], w))
    assert abs(skills[8.0][w] - crowd) < abs(skills[0.0][w] - crowd) / 2


def _with_one_label_spammer(seed: int) -> tuple[pd.DataFrame, str]:
    answers, _ = simulate(400, 12, 3, 4, seed=seed)
    tasks = answers["task"].unique()[::2]
    spammer = pd.DataFrame({"task": tasks, "worker": "always-0", "label": "0"})
    return pd.concat([answers, spammer], ignore_index=True), "always-0"


def test_mace_shape_sees_a_one_label_spammer_as_a_spammer() -> None:
    """The even one-coin shape calls a worker who always answers "0" right one time in three
    and spreads its errors evenly, so its answers are predicted badly; MACE's shape learns
    that it gives "0" whatever the truth, so its answers say nothing about the truth."""
    from aggregation import dawid_skene as ds
    from aggregation.encode import encode

    answers, name = _with_one_label_spammer(seed=4)
    enc = encode(answers)
    w = enc.workers.get_loc(name)
    zero = enc.labels.index("0")
    mace = ds.fit(enc, prior=ds.Shrinkage(np.inf, 2.0, bias_prior=2.0)).errors[w]
    even = ds.fit(enc, prior=ds.Shrinkage(np.inf, 2.0)).errors[w]
    assert mace[zero].min() > 0.95  # answers "0" given any true label
    assert even[zero].min() < 0.5
    # No evidence either way: the likelihood of "0" hardly depends on the true label.
    assert mace[zero].max() - mace[zero].min() < 0.02


def test_mace_shape_keeps_an_honest_workers_one_coin_skill() -> None:
    from aggregation import dawid_skene as ds
    from aggregation.encode import encode

    answers, _ = simulate(1000, 12, 3, 5, seed=8)
    enc = encode(answers)
    even = ds.fit(enc, prior=ds.Shrinkage(np.inf, 2.0)).errors
    mace = ds.fit(enc, prior=ds.Shrinkage(np.inf, 2.0, bias_prior=2.0)).errors
    diagonal = np.arange(enc.n_labels)
    np.testing.assert_allclose(mace[:, diagonal, diagonal], even[:, diagonal, diagonal], atol=0.05)


def test_infinite_bias_prior_gives_every_worker_the_crowds_spam_distribution() -> None:
    """A label distribution pulled all the way to the crowd's leaves one spam distribution for
    the whole crowd; where the crowd's errors are even, that is close to the even one-coin
    shape, a worker below chance included (the adversary's part). Close, not equal: the
    crowd's distribution is estimated (here .38/.27/.35) and the shares, not the skill, are
    pulled toward the crowd's."""
    from aggregation import dawid_skene as ds
    from aggregation.encode import encode

    answers, _ = simulate(400, 12, 3, 4, seed=5)
    adversary = answers[answers["worker"] == answers["worker"].iloc[0]].assign(worker="adversary")
    adversary["label"] = ((adversary["label"].astype(int) + 1) % 3).astype(str)  # never right
    enc = encode(pd.concat([answers, adversary], ignore_index=True))
    prior = ds.Shrinkage(np.inf, 2.0, bias_prior=1e9)
    limit = ds.fit(enc, prior=prior)
    state = ds.MaceState()
    ds._mace_errors(ds._confusion_counts(enc, limit.probas), prior, None, state)
    assert state.bias is not None
    assert np.ptp(state.bias, axis=0).max() < 1e-6  # every worker draws from the crowd's
    even = ds.fit(enc, prior=ds.Shrinkage(np.inf, 2.0))
    w = enc.workers.get_loc("adversary")
    assert limit.errors[w, 0, 0] < 0.15 and even.errors[w, 0, 0] < 0.15  # below chance in both
    assert (limit.probas.argmax(axis=1) == even.probas.argmax(axis=1)).mean() > 0.95


def test_steps_stop_em_early_and_at_the_same_place_as_a_capped_run() -> None:
    """`steps` in the prior is early stopping: the fit is the converged fit's first steps."""
    from aggregation import dawid_skene as ds
    from aggregation.encode import encode

    answers, _ = simulate(400, 12, 3, 4, seed=3, spammers=0.2)
    enc = encode(answers)
    converged = ds.fit(enc, prior=ds.Shrinkage(2.0, 2.0))
    early = ds.fit(enc, prior=ds.Shrinkage(2.0, 2.0, steps=3))
    capped = ds.fit(enc, n_iter=3, prior=ds.Shrinkage(2.0, 2.0))
    assert converged.n_iter > 3 and early.n_iter == 3
    np.testing.assert_array_equal(early.probas, capped.probas)
    assert np.abs(early.probas - converged.probas).max() > 1e-3
