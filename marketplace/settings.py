"""A job's settings as types: what the JSON columns hold, read once where they are used.

The API's schemas (`schemas.py`) validate them on the way in; these are what services read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QualificationSettings:
    """A test on `items` golden items before real tasks, passed at `pass_mark`; `carry_over`:
    a worker whose golden record on the requester's other jobs already meets the mark skips it."""

    items: int
    pass_mark: float
    carry_over: bool = False

    @classmethod
    def load(cls, stored: dict[str, Any]) -> QualificationSettings:
        return cls(int(stored["items"]), float(stored["pass_mark"]), bool(stored.get("carry_over", False)))
