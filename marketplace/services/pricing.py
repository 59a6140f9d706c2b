"""What an answered item pays, and the most it can pay (what a lease holds per entry).

Models (`job.pricing`): `per_item` (flat cents per item), `per_object` (cents per object drawn,
up to `max_objects` per item) and `tiered` (cents by annotation type). Golden items pay like
real ones, so pay never tells a worker which items were golden. A bonus (`job.bonus`) adds
cents per item to accepted work of a worker whose golden accuracy on the job is above the bar.
"""

from __future__ import annotations

from typing import Any


def normalise(pricing: dict[str, Any] | None, reward_cents: int | None) -> dict[str, Any]:
    """The job's pricing; `reward_cents` alone is shorthand for flat pay per item."""
    if pricing is not None:
        return dict(pricing)
    return {"model": "per_item", "cents": 1 if reward_cents is None else reward_cents}


def objects_in(answer: dict[str, Any]) -> int:
    """Objects an answer holds: a box, polygon or keypoint list counts its shapes; a label is one."""
    shapes = answer.get("objects")
    return len(shapes) if isinstance(shapes, list) else 1


def item_pay(pricing: dict[str, Any], annotation_type: str, answer: dict[str, Any]) -> int:
    model = pricing["model"]
    if model == "per_item":
        return int(pricing["cents"])
    if model == "per_object":
        return int(pricing["cents_per_object"]) * min(objects_in(answer), int(pricing["max_objects"]))
    return int(pricing["tiers"][annotation_type])


def item_pay_max(pricing: dict[str, Any], annotation_type: str) -> int:
    model = pricing["model"]
    if model == "per_item":
        return int(pricing["cents"])
    if model == "per_object":
        return int(pricing["cents_per_object"]) * int(pricing["max_objects"])
    return int(pricing["tiers"][annotation_type])


def bonus_per_item(bonus: dict[str, Any] | None, golden_accuracy: float | None) -> int:
    if not bonus or golden_accuracy is None or golden_accuracy <= float(bonus["golden_accuracy_above"]):
        return 0
    return int(bonus["cents_per_item"])


def item_hold(pricing: dict[str, Any], bonus: dict[str, Any] | None, annotation_type: str) -> int:
    """The most one task entry can cost: top pay plus the bonus."""
    return item_pay_max(pricing, annotation_type) + (int(bonus["cents_per_item"]) if bonus else 0)


def base_cents(pricing: dict[str, Any], annotation_type: str) -> int:
    """The figure shown as `reward_cents`: the most an item pays before any bonus."""
    return item_pay_max(pricing, annotation_type)
