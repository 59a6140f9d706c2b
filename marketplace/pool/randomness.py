"""The pool's random source: which golden items a task holds, the order of a task's items, the
shuffle of an upload.

Unpredictable by design (the operating system's generator): a worker who could predict the draws
could tell golden items from real ones. The one exception is the app's `POOL_SEED`
(`MARKETPLACE_POOL_SEED`), for demos and tests only, never production: then each app draws from
one seeded stream, so a run whose leases reach one process one at a time repeats itself
(`marketplace demo --seed`).
"""

from __future__ import annotations

import random
from typing import Any

from flask import current_app, has_app_context

_system = random.SystemRandom()


def _source() -> random.Random:
    seed = current_app.config.get("POOL_SEED") if has_app_context() else None
    if seed is None or seed == "":
        return _system
    return current_app.extensions.setdefault("pool_random", random.Random(int(seed)))  # type: ignore[no-any-return]


def seeded() -> bool:
    """True under `POOL_SEED`: then what the draws read must not depend on timing either (no
    cache refreshed by the clock)."""
    return _source() is not _system


def uniform() -> float:
    return _source().random()


def sample(values: list[Any], count: int) -> list[Any]:
    """`count` distinct values of `values` (all of them when there are fewer), in random order."""
    return _source().sample(values, min(len(values), count))


def shuffled(values: list[Any]) -> list[Any]:
    values = list(values)
    _source().shuffle(values)
    return values


def order_bytes(count: int) -> bytes:
    """Random bytes the lease statement sorts a task's entries by (4 per entry)."""
    return _source().randbytes(4 * count)
