"""The pool's random source: which golden items a task holds, and the order of a task's items.

Unpredictable by design (the operating system's generator): a worker who could predict the draws
could tell golden items from real ones.
"""

from __future__ import annotations

import os
import random
from typing import Any

_rng = random.SystemRandom()


def uniform() -> float:
    return _rng.random()


def sample(values: list[Any], count: int) -> list[Any]:
    """`count` distinct values of `values` (all of them when there are fewer), in random order."""
    return _rng.sample(values, min(len(values), count))


def shuffled(values: list[Any]) -> list[Any]:
    values = list(values)
    _rng.shuffle(values)
    return values


def order_bytes(count: int) -> bytes:
    """Random bytes the lease statement sorts a task's entries by (4 per entry)."""
    return os.urandom(4 * count)
