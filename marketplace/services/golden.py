"""The golden set's supply: each golden item is shown to at most `slots.golden_cap` workers (so
that how often an item comes back does not give it away), so a job uses its golden items up.

A job needs about `real items x overlap x r / (1 - r)` showings of golden items at golden ratio
`r` (each task holds golden items at that share). When the golden set cannot be shown that often,
the requester is warned (in the job's progress, from launch on): tasks issued after the golden
set is used up hold no golden item, and quality control has nothing new to score. Golden items
added to a running job join the set (a lease draws from the items not yet at their cap).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import case, func, select
from sqlmodel import Session

from marketplace.models import Item, Job
from marketplace.pool.slots import golden_cap


def supply(session: Session, job: Job) -> dict[str, Any]:
    """The golden set's figures and a warning when it is too small for the job."""
    cap = golden_cap(job)
    real, golden, shown, retired = session.execute(
        select(
            func.count().filter(Item.is_golden.is_(False)),
            func.count().filter(Item.is_golden.is_(True)),
            func.coalesce(func.sum(case((Item.is_golden.is_(True), Item.shown), else_=0)), 0),
            func.count().filter(Item.is_golden.is_(True), Item.shown >= cap),
        ).where(Item.job_id == job.id)
    ).one()
    ratio = min(job.golden_ratio, 0.9)
    needed = math.ceil(real * job.overlap * ratio / (1 - ratio)) if ratio > 0 else 0
    capacity = golden * cap
    warning = None
    if capacity < needed:
        warning = (
            f"the golden set is too small: {golden} golden items shown at most {cap} times each can fill "
            f"{capacity} of the ~{needed} places the job's tasks will have for them; tasks after that hold no "
            "golden item. Add golden items (also to a running job) or raise golden_max_views"
        )
    return {
        "items": golden,
        "max_views": cap,
        "shown": int(shown),
        "used_up": int(retired),
        "capacity": capacity,
        "needed": needed,
        "warning": warning,
    }
