"""What an answered item pays (`settings.Pricing`), and what a lease holds per task entry.

A bonus (`settings.Bonus`) adds cents per item to accepted work of a worker whose golden
accuracy on the job is above the bar; the hold covers the top pay plus the bonus.
"""

from __future__ import annotations

from typing import Any

from marketplace.settings import Bonus, Pricing


def objects_in(answer: dict[str, Any]) -> int:
    """Objects an answer holds: a box, polygon or keypoint list counts its shapes; a label is one."""
    shapes = answer.get("objects")
    return len(shapes) if isinstance(shapes, list) else 1


def item_hold(pricing: Pricing, bonus: Bonus | None, annotation_type: str) -> int:
    """The most one task entry can cost: top pay plus the bonus."""
    return pricing.item_pay_max(annotation_type) + (bonus.cents_per_item if bonus else 0)


def task_pay(pricing: Pricing, bonus: Bonus | None, annotation_type: str, items: int, currency: str) -> dict[str, Any]:
    """What a task pays, as a worker sees it when leasing: the most one item and the whole task
    pay (golden items pay like real ones), and the bonus per item a good golden record adds."""
    per_item = pricing.item_pay_max(annotation_type)
    pay: dict[str, Any] = {
        "currency": currency,
        "item_cents": per_item,
        "task_cents": per_item * items,
        "bonus_item_cents": bonus.cents_per_item if bonus else 0,
    }
    if pricing.model == "per_object":
        pay["object_cents"] = pricing.cents_per_object
    return pay
