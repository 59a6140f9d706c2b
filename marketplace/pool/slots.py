"""The free-work pool: one `slot` row per answer still wanted, `(item, round)`.

An item's answers fill distinct rounds (`UNIQUE (job_id, item_id, round)` on `answer`), so no
item can collect more answers than there are rounds issued for it. What the pool issues is
counted per item, not by round number: an item *has* its valid answers (not excluded), its open
leases and its free slots, and a job's redundancy asks each real item to have `overlap` of them
(its ceiling is `overlap_max` under dynamic overlap). Round numbers only keep answers apart:
after answers are excluded, the rounds they held are free for others.

Everything here runs in the caller's transaction, and a job's state follows its pool: running
while any free slot or open lease is left, completed when none is (`follow_pool`).
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlmodel import Session

from marketplace.errors import Invalid
from marketplace.models import AuditEvent, Item, Job, JobState, utcnow

# Per real item: what it has (valid answers, open leases, free slots) and which rounds are taken.
_HAVE = """
have AS (
    SELECT item_id, count(*) AS n, array_agg(round) AS rounds FROM (
        SELECT item_id, round FROM answer
        WHERE job_id = :job AND round IS NOT NULL AND NOT excluded
        UNION ALL
        SELECT ai.item_id, ai.round FROM assignment x JOIN assignmentitem ai ON ai.assignment_id = x.id
        WHERE x.job_id = :job AND x.state = 'leased' AND ai.round IS NOT NULL
        UNION ALL
        SELECT item_id, round FROM slot WHERE job_id = :job
    ) AS taken
    GROUP BY item_id
)"""

FILL_NEW = """
INSERT INTO slot (job_id, item_id, round)
SELECT i.job_id, i.id, r.round
FROM item i CROSS JOIN generate_series(0, :overlap - 1) AS r(round)
WHERE i.job_id = :job AND NOT i.is_golden AND (CAST(:items AS bigint[]) IS NULL OR i.id = ANY(:items))
"""

# Each real item up to `ceiling`, in the lowest rounds it has free.
TOP_UP = f"""
WITH {_HAVE}
INSERT INTO slot (job_id, item_id, round)
SELECT i.job_id, i.id, r.round
FROM item i
LEFT JOIN have h ON h.item_id = i.id
CROSS JOIN LATERAL (
    SELECT g AS round FROM generate_series(0, :ceiling + coalesce(h.n, 0)) AS g
    WHERE NOT (g = ANY(coalesce(h.rounds, '{{}}')))
    ORDER BY g
    LIMIT greatest(0, :ceiling - coalesce(h.n, 0))
) AS r
WHERE i.job_id = :job AND NOT i.is_golden
"""

# Free slots beyond each item's `ceiling` are withdrawn, the highest rounds first.
TRIM = f"""
WITH {_HAVE}, ranked AS (
    SELECT s.id, h.n - count(*) OVER (PARTITION BY s.item_id)
                 + row_number() OVER (PARTITION BY s.item_id ORDER BY s.round) AS nth
    FROM slot s JOIN have h ON h.item_id = s.item_id
    WHERE s.job_id = :job
)
DELETE FROM slot WHERE id IN (SELECT id FROM ranked WHERE nth > :ceiling)
"""

# Rounds given back (leases that ended without answers, answers excluded), each unless its item
# already has its ceiling.
GIVE_BACK = f"""
WITH {_HAVE}, back AS (
    SELECT b.item_id, b.round, row_number() OVER (PARTITION BY b.item_id ORDER BY b.round) AS nth
    FROM unnest(CAST(:items AS bigint[]), CAST(:rounds AS int[])) AS b(item_id, round)
)
INSERT INTO slot (job_id, item_id, round)
SELECT :job, back.item_id, back.round
FROM back LEFT JOIN have h ON h.item_id = back.item_id
WHERE coalesce(h.n, 0) + back.nth <= :ceiling
ON CONFLICT (job_id, item_id, round) DO NOTHING
"""

TUNED = "job_tuned"  # the audit event of a job's settings changed (`jobs.tune_job`)

# Per item of a job: valid real answers beyond what it wants (`ceiling`), not counting answers
# given before the ceiling last changed (lowering overlap keeps what was already given).
BEYOND = """
SELECT count(*) AS items, coalesce(sum(n - greatest(:ceiling, before)), 0) AS answers FROM (
    SELECT count(*) AS n, count(*) FILTER (WHERE created_at < CAST(:since AS timestamptz)) AS before
    FROM answer WHERE job_id = :job AND NOT excluded AND NOT is_golden
    GROUP BY item_id
) AS per_item
WHERE n > greatest(:ceiling, before)
"""

PENDING = """
SELECT EXISTS (SELECT 1 FROM slot WHERE job_id = :job)
    OR EXISTS (SELECT 1 FROM assignment WHERE job_id = :job AND state = 'leased') AS pending
"""


def ceiling(job: Job) -> int:
    """The most answers the job wants of an item."""
    return int(job.overlap_max or job.overlap)


# How many workers a golden item is shown to at most: twice the most answers a real item gets,
# unless the job says (`golden_max_views`). Shown more, a golden item would stand out to a few
# colluding workers by how often it comes back. The same rule in SQL, over the job's row:
GOLDEN_CAP = "coalesce(golden_max_views, 2 * coalesce(overlap_max, overlap))"


def golden_cap(job: Job) -> int:
    return int(job.golden_max_views or 2 * ceiling(job))


def check_size(session: Session, job: Job, limit: int, *, new_items: int = 0, field: str = "overlap") -> None:
    """Refuse (a 422 naming `field`) a job that would ask for more than `limit` answers: its real
    items (and `new_items` about to be added) times the most answers it wants of each."""
    items = session.execute(select(func.count()).where(Item.job_id == job.id, Item.is_golden.is_(False))).scalar_one()
    wanted = (items + new_items) * ceiling(job)
    if wanted > limit:
        raise Invalid(field, f"the job would ask for {wanted} answers, more than this marketplace's limit of {limit}")


def fill_new(session: Session, job: Job, item_ids: list[int] | None = None) -> None:
    """Rounds 0 .. overlap - 1 of items that have none yet: every real item of a job at its first
    launch (`item_ids` None), or real items added to a launched job. One INSERT, linear in items."""
    session.execute(text(FILL_NEW), {"job": job.id, "overlap": job.overlap, "items": item_ids})


def top_up(session: Session, job: Job, wanted: int) -> None:
    """Every real item of the job up to `wanted` answers (raising overlap)."""
    session.execute(text(TOP_UP), {"job": job.id, "ceiling": wanted})
    follow_pool(session, job)


def trim(session: Session, job: Job) -> None:
    """Withdraw free slots beyond each item's ceiling (lowering overlap): answers already given
    and open leases are kept, and counted."""
    session.execute(text(TRIM), {"job": job.id, "ceiling": ceiling(job)})
    follow_pool(session, job)


def give_back(session: Session, job: Job, rounds: list[tuple[int, int]]) -> None:
    """Return (item, round) pairs to the pool, each unless its item already has its ceiling."""
    if rounds:
        params = {
            "job": job.id,
            "items": [item for item, _ in rounds],
            "rounds": [round_no for _, round_no in rounds],
            "ceiling": ceiling(job),
        }
        session.execute(text(GIVE_BACK), params)
    follow_pool(session, job)


def extend(session: Session, job_id: int, items: list[int]) -> int:
    """One more round for each of `items` (dynamic overlap), unless it already has one free or
    leased; returns how many were added."""
    statement = """
    WITH last AS (
        SELECT item_id, max(round) AS round FROM answer
        WHERE job_id = :job AND item_id = ANY(:items) GROUP BY item_id
    )
    INSERT INTO slot (job_id, item_id, round)
    SELECT :job, last.item_id, last.round + 1 FROM last
    WHERE last.round IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM slot s WHERE s.job_id = :job AND s.item_id = last.item_id)
      AND NOT EXISTS (SELECT 1 FROM assignment x JOIN assignmentitem ai ON ai.assignment_id = x.id
                      WHERE x.job_id = :job AND x.state = 'leased' AND ai.item_id = last.item_id)
    ON CONFLICT (job_id, item_id, round) DO NOTHING
    """
    return int(session.execute(text(statement), {"job": job_id, "items": items}).rowcount)


def over_issued(session: Session) -> list[str]:
    """Jobs whose items collected more valid answers than their redundancy asks for (since the
    redundancy last changed): work issued and paid that nobody ordered. An empty list when none."""
    problems = []
    jobs = session.execute(select(Job).where(Job.state != JobState.DRAFT).order_by(Job.id)).scalars().all()
    for job in jobs:
        since = session.execute(
            select(func.max(AuditEvent.at)).where(
                AuditEvent.subject_type == "job", AuditEvent.subject_id == job.id, AuditEvent.action == TUNED
            )
        ).scalar()
        row = session.execute(text(BEYOND), {"job": job.id, "ceiling": ceiling(job), "since": since}).one()
        if row.items:
            wanted = ceiling(job)
            problems.append(f"job {job.id}: {row.answers} answers beyond the {wanted} ordered, on {row.items} items")
    return problems


def clear(session: Session, job_id: int) -> None:
    """Empty the job's pool (cancel)."""
    session.execute(text("DELETE FROM slot WHERE job_id = :job"), {"job": job_id})


def follow_pool(session: Session, job: Job) -> None:
    """Running while free work or an open lease is left, completed when none is; other states
    (draft, paused, cancelled) are the requester's and stay."""
    if job.state not in (JobState.RUNNING, JobState.COMPLETED):
        return
    pending = bool(session.execute(text(PENDING), {"job": job.id}).scalar_one())
    state = JobState.RUNNING if pending else JobState.COMPLETED
    if job.state != state:
        job.state, job.updated_at = state, utcnow()
        session.add(job)
        session.flush()


def finish_if_done(session: Session, job_id: int) -> bool:
    """Complete a running job that has no free slot and no open lease left; True if it did. A
    submit marks its job completed when it finds the pool empty, but one whose statement began
    before the last lease took the last slot saw the slot, while that lease's own submit saw
    the first still open: neither completed it. The sweep calls this (the job row locked, as a
    finishing submit locks it)."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.state != JobState.RUNNING:
        return False
    follow_pool(session, job)
    return bool(job.state == JobState.COMPLETED)
