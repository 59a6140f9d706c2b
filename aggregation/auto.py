"""The default method: a Dawid-Skene whose complexity is chosen from the job's own data.

Full Dawid-Skene learns a K x K confusion matrix per worker and overfits workers who answered
little; a one-coin model (one skill per worker) cannot see that a worker confuses two classes
in particular. `auto` fits the family between the two: each worker's confusion matrix is
shrunk toward its one-coin version (`dawid_skene.Shrinkage`), with a prior strength from 0.5
pseudo-answers per class (close to full Dawid-Skene) to infinity (one-coin), and each skill
toward the crowd's mean. The strength is chosen by how well each model, fitted with a fold of
answers hidden, predicts the hidden answers (`heldout`): the truth is never needed, and a
model that overfits predicts a worker's next answer badly.

Golden tasks are clamped to their known labels in every fit. When there are at least
`Settings.min_golden_to_choose` of them they may overrule the choice: each alternative in
`ALTERNATIVES` is compared with the chosen model on the golden tasks, each predicted while
hidden (5-fold), and may replace it only when it is right on significantly more of them (a
one-sided sign test over the tasks where the two disagree); of those that are, the one right
on most golden tasks does. Fewer golden tasks
than that cannot tell a better model from luck (at 20, even a 5-point better model wins by
one task on average), so they only teach the model and calibrate its confidence.

Confidence is the posterior softened by a temperature (`calibration`): without golden tasks,
the temperature at which the model best predicted the hidden answers; with golden tasks,
fitted on their held-out posteriors, pulled toward that unsupervised temperature when golden
tasks are few.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from . import dawid_skene as ds
from .calibration import PRIOR_SD, fit_temperature
from .encode import Encoded, FloatArray, IntArray, vote_counts
from .heldout import FOLDS, answer_folds, predict_hidden, temper
from .majority_vote import majority_vote, weighted_vote

INF = float("inf")


@dataclass(frozen=True)
class Settings:
    """Every knob of `auto`, with the values it runs with (the bench tries others)."""

    strengths: tuple[float, ...] = (0.5, 2.0, 8.0, 32.0, INF)
    """Pseudo-answers per true class pulling a worker's confusions toward one-coin."""
    skill_priors: tuple[float, ...] = (2.0, 16.0)
    """Pseudo-answers at the crowd's mean accuracy added to every worker's skill."""
    bias_priors: tuple[float, ...] = (INF, 2.0)
    """Shapes of the one-coin end: errors spread evenly (INF), or MACE's, a worker's own label
    distribution pulled toward the crowd's by this many answers a label (`dawid_skene.Shrinkage`)."""
    steps: tuple[int, ...] = (ds.MAX_STEPS, 10)
    """EM steps at most: run to convergence, or stop early (`dawid_skene.Shrinkage`). Held-out
    answers choose; on a sparse crowd the converged fit can run its class priors to one label."""
    alternatives: tuple[str, ...] = ("dawid_skene", "majority_vote", "wawa", "crowd_dawid_skene")
    """What golden tasks may prefer over the chosen shrinkage (names in `ALTERNATIVES`)."""
    min_golden_to_choose: int = 30
    """Fewer golden tasks only teach the model and calibrate it."""
    switch_z: float = 2.0
    """An alternative replaces the chosen model when (wins - losses) / sqrt(wins + losses)
    on held-out golden tasks reaches this (one-sided p ~ 0.023)."""
    fold_correction: bool = True
    """Scale the unsupervised temperature by FOLDS / (FOLDS - 1) (see `choose_shrinkage`)."""
    prior_sd: float = PRIOR_SD
    """Spread of log T around the unsupervised temperature when golden tasks calibrate."""
    max_selection_answers: int = 60_000
    """Above this, the choice is made on a random subset of tasks with about this many
    answers (every golden task kept), and only the chosen model fits everything."""
    min_answers: int = 30
    """Below this many answers nothing can be estimated per worker: majority vote."""


DEFAULT = Settings()
GOLDEN_FOLDS = 5
SEED = 0


def _argmax(probas: FloatArray) -> IntArray:
    return probas.argmax(axis=1).astype(np.int64)


def _name(prior: ds.Shrinkage) -> str:
    steps = f",steps={prior.steps}" if prior.steps != ds.MAX_STEPS else ""
    if prior.crowd_shape:
        return f"crowd_dawid_skene(s={prior.strength:g},a={prior.skill_prior:g}{steps})"
    biased = bool(np.isfinite(prior.bias_prior))
    bias = f",b={prior.bias_prior:g}" if biased else ""
    if prior.one_coin:
        return f"{'mace' if biased else 'one_coin'}_dawid_skene(a={prior.skill_prior:g}{bias}{steps})"
    return f"dawid_skene(s={prior.strength:g},a={prior.skill_prior:g}{bias}{steps})"


@dataclass(frozen=True)
class Candidate:
    """A way to aggregate: posteriors and choices from an encoding (golden tasks clamped)."""

    name: str
    fit: Callable[[Encoded], tuple[FloatArray, IntArray]]
    prior_temperature: float | None = None
    """Where golden tasks' temperature fit is pulled toward; None: the temperature held-out
    answers chose for the shrunk model (a vote has no model of the answers to choose one)."""


def shrunk(prior: ds.Shrinkage) -> Candidate:
    def fit(enc: Encoded) -> tuple[FloatArray, IntArray]:
        probas = ds.fit(enc, prior=prior).probas
        return probas, _argmax(probas)

    return Candidate(_name(prior), fit)


def _plain_ds(enc: Encoded) -> tuple[FloatArray, IntArray]:
    probas = ds.fit(enc).probas
    return probas, _argmax(probas)


VOTE_PSEUDO_COUNT = 1.0
"""Average voters added to every label before a vote's shares become its posterior (Laplace's
rule of succession): with raw shares a golden task whose label got no vote has probability
zero, which no temperature mends (the fit ran to T = 90 and every confidence to 1/K)."""


def _smoothed(votes: FloatArray, voter: float) -> FloatArray:
    """Vote shares with `VOTE_PSEUDO_COUNT` voters of weight `voter` added to every label."""
    pseudo = VOTE_PSEUDO_COUNT * voter
    return (votes + pseudo) / (votes.sum(axis=1, keepdims=True) + pseudo * votes.shape[1])


def _smoothed_vote(enc: Encoded) -> tuple[FloatArray, IntArray]:
    _, choice = majority_vote(enc)
    return _smoothed(vote_counts(enc), 1.0), choice


def _smoothed_weighted_vote(enc: Encoded) -> tuple[FloatArray, IntArray]:
    votes, choice = weighted_vote(enc)
    return _smoothed(votes, float(votes.sum()) / max(len(enc.t), 1)), choice  # an average voter


MAJORITY = Candidate("majority_vote", _smoothed_vote, prior_temperature=1.0)
THIN = Candidate("majority_vote", majority_vote)
"""Below `Settings.min_answers`: the plain vote, its shares as the confidence (no golden tasks
to calibrate against, nothing to fit)."""
WAWA = Candidate("wawa", _smoothed_weighted_vote, prior_temperature=1.0)
ALTERNATIVES = {
    "dawid_skene": Candidate("dawid_skene", _plain_ds),
    "majority_vote": MAJORITY,
    "wawa": WAWA,
    "crowd_dawid_skene": shrunk(ds.Shrinkage(INF, 2.0, crowd_shape=True)),
}
"""What golden tasks may prefer over the chosen shrinkage: crowd-kit's Dawid-Skene (no
shrinkage at all), majority vote (no skills at all), Wawa (one weight a worker, no class
prior: on crowds whose answers lean to one label every model with class priors follows the
lean), and one confusion matrix for the whole
crowd with one skill per worker (graded labels, where everyone confuses neighbours; added
after seeing the `web` data set, where it is 7 points better and held-out answers cannot
tell)."""


def selection_sample(enc: Encoded, max_answers: int) -> Encoded:
    """All of `enc` when small; else every golden task and a seeded random share of the
    others, about `max_answers` answers in all, with tasks and workers renumbered."""
    if len(enc.t) <= max_answers:
        return enc
    rng = np.random.default_rng(SEED)
    share = max_answers / len(enc.t)
    keep_task = rng.random(enc.n_tasks) < share
    keep_task[enc.gold_t] = True
    mask = keep_task[enc.t]
    tasks, t = np.unique(enc.t[mask], return_inverse=True)
    workers, w = np.unique(enc.w[mask], return_inverse=True)
    position = np.full(enc.n_tasks, -1, dtype=np.int64)
    position[tasks] = np.arange(len(tasks))
    return Encoded(
        enc.tasks[tasks],
        enc.workers[workers],
        enc.labels,
        t.astype(np.int64),
        w.astype(np.int64),
        enc.l[mask],
        position[enc.gold_t],
        enc.gold_l,
        None if enc.known_skill is None else enc.known_skill[workers],
        None if enc.known_weight is None else enc.known_weight[workers],
    )


@dataclass(frozen=True)
class Selection:
    """What auto chose and why."""

    candidate: Candidate
    temperature: float
    loglik: dict[str, float] = field(default_factory=dict)
    golden: dict[str, int] = field(default_factory=dict)


MAX_PASSES = 3
"""Coordinate search passes over (shape, strength, skill prior, EM steps); it stops earlier when a pass
changes nothing, which the second pass usually confirms."""


def choose_shrinkage(enc: Encoded, settings: Settings = DEFAULT) -> tuple[ds.Shrinkage, float, dict[str, float]]:
    """The prior whose model best predicts held-out answers, its temperature, and every
    tried prior's score (mean log probability of a hidden answer). Coordinate search from the
    one-coin end (the last strength) with even errors, the first skill prior and the first
    number of EM steps: the shape (even errors or MACE's), the strength, the skill prior, the
    steps, again until a pass changes nothing.
    One pass is not enough: the shape that wins at the first skill prior can lose at the one
    chosen after it (with a weak skill prior a worker's few answers can put the even shape's
    skill below chance)."""
    folds = answer_folds(len(enc.t))
    scores: dict[ds.Shrinkage, float] = {}
    temperatures: dict[ds.Shrinkage, float] = {}

    def score(prior: ds.Shrinkage) -> float:
        if prior not in scores:
            scores[prior], temperatures[prior] = predict_hidden(enc, prior, folds).best()
        return scores[prior]

    # Two labels: MACE's shape has two parameters a worker, as many as a full confusion
    # matrix, which the strength already reaches; it is an intermediate shape from three.
    shapes = settings.bias_priors if enc.n_labels >= 3 else settings.bias_priors[:1]
    coordinates: tuple[tuple[Callable[[ds.Shrinkage, float], ds.Shrinkage], tuple[float, ...]], ...] = (
        (lambda prior, value: replace(prior, bias_prior=value), shapes),
        (lambda prior, value: replace(prior, strength=value), settings.strengths),
        (lambda prior, value: replace(prior, skill_prior=value), settings.skill_priors),
        (lambda prior, value: replace(prior, steps=int(value)), settings.steps),
    )
    # The last strength (the one-coin end unless a variant leaves it out) and the first of the rest.
    best = ds.Shrinkage(settings.strengths[-1], settings.skill_priors[0], bias_prior=shapes[0], steps=settings.steps[0])
    for _ in range(MAX_PASSES):
        start = best
        for move, values in coordinates:
            # the current best first, so that a tie keeps it
            best = max([best] + [move(best, value) for value in values], key=score)
        if best == start:
            break
    # Fold models saw (FOLDS - 1) / FOLDS of the answers, so their log-odds are that much
    # smaller than the full model's; the full model needs a temperature larger by the inverse.
    correction = FOLDS / (FOLDS - 1) if settings.fold_correction else 1.0
    named = {_name(prior): round(value, 5) for prior, value in scores.items()}
    return best, temperatures[best] * correction, named


def held_out_golden(enc: Encoded, candidate: Candidate) -> tuple[IntArray, FloatArray]:
    """Choices and posteriors for every golden task while it is hidden (not clamped) and the
    other golden tasks are clamped."""
    n_gold = len(enc.gold_t)
    folds = np.arange(n_gold) % min(GOLDEN_FOLDS, n_gold)
    choices = np.empty(n_gold, dtype=np.int64)
    posteriors = np.empty((n_gold, enc.n_labels))
    for fold in np.unique(folds):
        train = folds != fold
        probas, choice = candidate.fit(enc.with_gold(enc.gold_t[train], enc.gold_l[train]))
        choices[~train] = choice[enc.gold_t[~train]]
        posteriors[~train] = probas[enc.gold_t[~train]]
    return choices, posteriors


def sign_test_z(wins: int, losses: int) -> float:
    """How far `wins` exceeds `losses` in standard errors of a fair coin over the disputes."""
    return (wins - losses) / np.sqrt(wins + losses) if wins + losses else 0.0


def select(enc: Encoded, settings: Settings = DEFAULT) -> Selection:
    """The candidate and temperature to use, with the evidence for them."""
    if len(enc.t) < settings.min_answers:
        return Selection(THIN, 1.0)
    sample = selection_sample(enc, settings.max_selection_answers)
    prior, temperature, loglik = choose_shrinkage(sample, settings)
    chosen = shrunk(prior)
    n_gold = len(sample.gold_t)
    if n_gold == 0:
        return Selection(chosen, temperature, loglik)
    choices, posteriors = held_out_golden(sample, chosen)
    right = choices == sample.gold_l
    golden = {chosen.name: int(right.sum())}
    if n_gold >= settings.min_golden_to_choose:
        # Each alternative must beat the chosen model; of those that do, the one right on most
        # golden tasks (the largest z alone can favour one that disagrees more, not better).
        winners: list[tuple[int, float, Candidate, FloatArray]] = []
        for name in settings.alternatives:
            alternative = ALTERNATIVES[name]
            alt_choices, alt_posteriors = held_out_golden(sample, alternative)
            alt_right = alt_choices == sample.gold_l
            golden[alternative.name] = int(alt_right.sum())
            z = sign_test_z(int((alt_right & ~right).sum()), int((right & ~alt_right).sum()))
            if z >= settings.switch_z:
                winners.append((int(alt_right.sum()), z, alternative, alt_posteriors))
        if winners:
            _, _, chosen, posteriors = max(winners, key=lambda winner: winner[:2])
    if chosen.prior_temperature is not None:
        temperature = chosen.prior_temperature
    temperature = fit_temperature(posteriors, sample.gold_l, temperature, settings.prior_sd)
    return Selection(chosen, temperature, loglik, golden)


def auto(enc: Encoded, settings: Settings = DEFAULT) -> tuple[FloatArray, IntArray, str]:
    """Calibrated posteriors, choices and the name of the method used, fitted on all answers
    and golden tasks."""
    selection = select(enc, settings)
    probas, choice = selection.candidate.fit(enc)
    name = selection.candidate.name
    if selection.temperature != 1.0:
        probas = temper(probas, selection.temperature)
        name += f",T={selection.temperature:.3g}"
    return probas, choice, name
