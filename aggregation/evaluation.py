"""Scoring aggregates against ground truth, and comparisons that cannot fit their own test.

Used by `bench` only: nothing here runs in production, where there is no ground truth.

- `score`, `calibration`: accuracy and expected calibration error on the scored tasks.
- `gaps`: per data set and setting, how far `auto` is from the best single method of the
  same run (same golden tasks), the yardstick of the issue that asked for `auto`.
- `leave_one_out`: for each data set, the `auto` variant that did best on all the *other*
  data sets, scored on the one left out: what a setting chosen by looking at benchmarks is
  worth on a crowd it was not chosen on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .calibration import expected_calibration_error
from .result import AggregationResult


def _scored(result: AggregationResult, truth: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    tasks = truth.index.intersection(result.labels.index)
    hit = (result.labels.loc[tasks] == truth.loc[tasks]).to_numpy().astype(np.float64)
    return result.confidence.loc[tasks].to_numpy(), hit


def score(result: AggregationResult, truth: pd.Series) -> float:
    """Accuracy over tasks with ground truth that were aggregated."""
    return float(_scored(result, truth)[1].mean())


def calibration(result: AggregationResult, truth: pd.Series) -> dict[str, float]:
    """Expected calibration error over 10 equal-width bins and accuracy above 0.9."""
    conf, hit = _scored(result, truth)
    high = conf > 0.9
    return {
        "ece": round(expected_calibration_error(conf, hit), 4),
        "acc_above_0_9": round(float(hit[high].mean()), 4) if high.any() else float("nan"),
        "share_above_0_9": round(float(high.mean()), 4),
    }


@dataclass(frozen=True)
class Gap:
    """`auto` against the best single method on one data set and setting (points, 0-100)."""

    dataset: str
    setting: str
    auto: float
    best_method: str
    best: float
    ece: float

    @property
    def points(self) -> float:
        return 100.0 * (self.auto - self.best)


def gaps(records: Iterable[Mapping[str, object]], auto: str = "auto") -> list[Gap]:
    """One `Gap` per (data set, setting) that has `auto` and at least one other method."""
    frame = pd.DataFrame(list(records))
    out = []
    for (dataset, setting), part in frame.groupby(["dataset", "setting"], sort=False):
        mine = part[part.method == auto]
        others = part[part.method != auto]
        if mine.empty or others.empty:
            continue
        top = others.loc[others.accuracy.idxmax()]
        ece = float(mine.ece.iloc[0]) if "ece" in mine else float("nan")
        out.append(
            Gap(str(dataset), str(setting), float(mine.accuracy.iloc[0]), str(top.method), float(top.accuracy), ece)
        )
    return out


def group_of(dataset: str) -> str:
    """Synthetic data sets are named `scenario:seed`, cuts of a real set `name~k:seed` and
    splits `name@k:seed`; every seed of a scenario is one group, and a real set with its cuts
    and splits is one."""
    return re.split(r"[:~@]", dataset)[0]


@dataclass(frozen=True)
class HeldOut:
    """The variant chosen without looking at `group`, and how it does there."""

    group: str
    chosen: str
    points: float
    default_points: float


def leave_one_out(by_variant: Mapping[str, list[Gap]], default: str) -> list[HeldOut]:
    """For each group, the variant with the best mean gap over the other groups (both
    settings), and its mean gap on the group itself."""
    table = pd.DataFrame(
        [
            {"variant": variant, "group": group_of(g.dataset), "points": g.points}
            for variant, found in by_variant.items()
            for g in found
        ]
    )
    per_group = table.groupby(["variant", "group"]).points.mean().unstack("group")
    out = []
    for group in per_group.columns:
        rest = per_group.drop(columns=group).mean(axis=1)
        chosen = str(rest.idxmax())
        there, default_there = per_group.loc[chosen, group], per_group.loc[default, group]
        out.append(HeldOut(str(group), chosen, float(there), float(default_there)))
    return out
