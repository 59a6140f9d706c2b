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


@dataclass(frozen=True)
class Pricing:
    """What an answered item pays (`job.pricing`): `per_item` (flat `cents`), `per_object`
    (`cents_per_object` for each object drawn, up to `max_objects` an item) or `tiered` (cents by
    annotation type). Golden items pay like real ones, so pay never tells a worker which items
    were golden."""

    model: str
    cents: int = 0
    cents_per_object: int = 0
    max_objects: int = 0
    tiers: tuple[tuple[str, int], ...] = ()

    @classmethod
    def load(cls, stored: dict[str, Any] | None, reward_cents: int | None = None) -> Pricing:
        """The stored pricing; none stored: `reward_cents` (default 1) flat per item."""
        if stored is None:
            return cls("per_item", cents=1 if reward_cents is None else reward_cents)
        return cls(
            model=stored["model"],
            cents=int(stored.get("cents", 0)),
            cents_per_object=int(stored.get("cents_per_object", 0)),
            max_objects=int(stored.get("max_objects", 0)),
            tiers=tuple(sorted((str(k), int(v)) for k, v in (stored.get("tiers") or {}).items())),
        )

    def stored(self) -> dict[str, Any]:
        """As the job's JSON column holds it (the fields of its model only)."""
        if self.model == "per_item":
            return {"model": self.model, "cents": self.cents}
        if self.model == "per_object":
            return {"model": self.model, "cents_per_object": self.cents_per_object, "max_objects": self.max_objects}
        return {"model": self.model, "tiers": dict(self.tiers)}

    def item_pay(self, annotation_type: str, objects: int = 1) -> int:
        """What an item answered with `objects` objects pays (a label is one object)."""
        if self.model == "per_item":
            return self.cents
        if self.model == "per_object":
            return self.cents_per_object * min(objects, self.max_objects)
        return dict(self.tiers)[annotation_type]

    def item_pay_max(self, annotation_type: str) -> int:
        """The most an item can pay: what a lease holds per entry, before any bonus."""
        if self.model == "per_object":
            return self.cents_per_object * self.max_objects
        return self.item_pay(annotation_type)


@dataclass(frozen=True)
class Bonus:
    """Cents per item added to accepted work of a worker whose golden accuracy on the job is
    above the bar (`job.bonus`)."""

    golden_accuracy_above: float
    cents_per_item: int

    @classmethod
    def load(cls, stored: dict[str, Any] | None) -> Bonus | None:
        if not stored:
            return None
        return cls(float(stored["golden_accuracy_above"]), int(stored["cents_per_item"]))

    def per_item(self, golden_accuracy: float | None) -> int:
        if golden_accuracy is None or golden_accuracy <= self.golden_accuracy_above:
            return 0
        return self.cents_per_item


@dataclass(frozen=True)
class AcceptanceRules:
    """How a requester judges submitted work (`job.acceptance`), within the operator's limits
    (`services/acceptance.Limits`); None: that rule is off (auto-accept: the operator's default)."""

    reject_failed_golden: int | None = None
    min_agreement: float | None = None
    auto_accept_seconds: int | None = None

    @classmethod
    def load(cls, stored: dict[str, Any] | None) -> AcceptanceRules:
        stored = stored or {}
        failed, agreement, delay = (
            stored.get("reject_failed_golden"),
            stored.get("min_agreement"),
            stored.get("auto_accept_seconds"),
        )
        return cls(
            None if failed is None else int(failed),
            None if agreement is None else float(agreement),
            None if delay is None else int(delay),
        )


@dataclass(frozen=True)
class LeaseLimits:
    """How much open work one worker may hold (config: MAX_OPEN_LEASES, MAX_OPEN_LEASES_PER_JOB):
    a worker (or a few accounts) hoarding leases holds the work and its budget from everyone."""

    open_leases: int = 3
    open_leases_per_job: int = 2

    @classmethod
    def from_config(cls, config: Any) -> LeaseLimits:
        return cls(int(config["MAX_OPEN_LEASES"]), int(config["MAX_OPEN_LEASES_PER_JOB"]))
