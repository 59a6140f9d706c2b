"""A job's items as its requester sees them: keys, listing, one item.

A key is the requester's own name for an item (an id from their system, a file name), unique
in its job, so that results join back to what was uploaded; an item uploaded without one is
named by its id. Item ids themselves are drawn in a shuffled order (`jobs.add_items`), so
they say nothing about which items are golden.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlmodel import Session

from marketplace.errors import Invalid, NotFound
from marketplace.models import Item
from marketplace.pool import randomness

# The first of the given keys (in upload order) that an item of the job already carries: one
# statement whatever the upload's size, an index lookup per key. (An IN list per 1,000 keys,
# once psycopg had prepared it, ran on a generic plan that compared every key with every
# stored one: the second 50,000-item upload of a job took 100 s, the first 3 s.)
FIRST_TAKEN_KEY = text(
    "SELECT k.key FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(key, n)"
    " JOIN item i ON i.job_id = :job AND i.key = k.key ORDER BY k.n LIMIT 1"
)


def check_new_keys(session: Session, job_id: int, keys: list[str | None]) -> None:
    """Refuse a key used twice in the upload or already used in the job (422 naming the index)."""
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key is None:
            continue
        if key in first:
            raise Invalid(f"{index}.key", f"the same key as item {first[key]} of this upload")
        first[key] = index
    taken = _first_stored_key(session, job_id, list(first))
    if taken is not None:
        raise Invalid(f"{first[taken]}.key", "the job already has an item with this key")


def new_ids(session: Session, count: int) -> list[int]:
    """`count` fresh item ids in a random order: handed out in the order items were sent, they
    say nothing about which items are golden."""
    drawn = session.execute(
        text("SELECT nextval(pg_get_serial_sequence('item', 'id')) FROM generate_series(1, :n)"), {"n": count}
    ).scalars()
    return randomness.shuffled(list(drawn))


def final_keys(session: Session, job_id: int, keys: list[str | None], ids: list[int]) -> list[str]:
    """Every item's key: its own, or its id for an item uploaded without one. A requester's key
    that happens to be such an id (in this upload or before) is refused rather than shared: a
    key names one item."""
    by_name = {str(ids[index]): index for index, key in enumerate(keys) if key is None}
    given = {key for key in keys if key is not None}
    clash = next((name for name in by_name if name in given), None)
    clash = clash or _first_stored_key(session, job_id, list(by_name))
    if clash is not None:
        raise Invalid(
            f"{by_name[clash]}.key",
            f"an item without a key takes its id as key, and {clash} is already another item's key: give it a key",
        )
    return [key if key is not None else str(item_id) for key, item_id in zip(keys, ids, strict=True)]


def _first_stored_key(session: Session, job_id: int, keys: list[str]) -> str | None:
    """The first of `keys` that an item of the job already carries."""
    if not keys:
        return None
    found = session.execute(FIRST_TAKEN_KEY, {"keys": keys, "job": job_id}).scalar()
    return None if found is None else str(found)


def _view(row: Any) -> dict[str, Any]:
    answer = row.gold if row.gold is not None else row.answer
    return {"id": row.id, "key": row.key, "data": row.data, "golden": row.is_golden, "answer": answer}


_COLUMNS = (Item.id, Item.key, Item.data, Item.is_golden, Item.answer, Item.gold)


def items_page(session: Session, job_id: int, after: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Items with id > `after` (golden ones too, flagged), keyset-paginated by id."""
    rows = session.execute(
        select(*_COLUMNS).where(Item.job_id == job_id, Item.id > after).order_by(Item.id).limit(limit + 1)
    ).all()
    page = [_view(row) for row in rows[:limit]]
    return page, page[-1]["id"] if len(rows) > limit else None


def get_item(session: Session, job_id: int, item_id: int) -> dict[str, Any]:
    row = session.execute(select(*_COLUMNS).where(Item.job_id == job_id, Item.id == item_id)).one_or_none()
    if row is None:
        raise NotFound(f"item {item_id} not found in job {job_id}")
    return _view(row)
