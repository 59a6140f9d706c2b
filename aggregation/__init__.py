"""Aggregation of crowd answers: pure computation on pandas, numpy and crowd-kit.

Answers in (task, worker, label), one aggregate per task out, plus worker quality from
golden tasks and agreement. Imports nothing of the rest of the project.
"""

from __future__ import annotations

from .api import aggregate
from .quality import agreement, golden_scores
from .result import METHODS, AggregationResult, __version__

__all__ = ["METHODS", "AggregationResult", "__version__", "aggregate", "agreement", "golden_scores"]
