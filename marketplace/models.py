"""The tables. Marshmallow owns the API shapes; these classes are storage only.

Every hot table (item, slot, assignment, assignment_item, answer, aggregate) carries
`job_id` and is indexed by it first, so it can be distributed by job on Citus.

The free-work pool is its own table (`slot`): one row per answer still wanted for a real
item and round. Leasing deletes slots; expiry, skip and revocation put them back. Answers
carry the round they filled, and `UNIQUE (job_id, item_id, round)` on `answer` makes
over-redundancy impossible, whatever the application does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

BigId = BigInteger()


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobState(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class AssignmentState(StrEnum):
    LEASED = "leased"
    SUBMITTED = "submitted"
    SKIPPED = "skipped"
    EXPIRED = "expired"
    REVOKED = "revoked"


class AssignmentKind(StrEnum):
    TASK = "task"
    QUALIFICATION = "qualification"  # a test on golden items before real tasks


class Decision(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    BANNED = "banned"


class Role(StrEnum):
    REQUESTER = "requester"
    WORKER = "worker"
    OPERATOR = "operator"


class QualificationState(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


class PayoutState(StrEnum):
    PENDING = "pending"
    DONE = "done"


class WebhookEvent(StrEnum):
    """What a webhook can be told (`services/webhooks.py`)."""

    JOB_FINISHED = "job.finished"
    AGGREGATION_DONE = "aggregation.done"
    PAYOUT_RUN_DONE = "payout_run.done"


class DeliveryState(StrEnum):
    PENDING = "pending"  # to be sent, or sent again after a failure
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed


class LedgerKind(StrEnum):
    """What a movement of money is (`LedgerTxn.kind`)."""

    FUND = "fund"
    BUDGET = "budget"
    HOLD = "hold"
    RELEASE = "release"
    WORK = "work"
    BONUS = "bonus"
    REFUND = "refund"
    PAYOUT = "payout"


class Account(SQLModel, table=True):
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    role: str = Field(max_length=16)  # requester | worker | operator
    name: str = Field(max_length=200)
    key_hash: str = Field(max_length=64, unique=True)
    status: str = Field(default="active", max_length=16)  # active | banned
    created_at: datetime = Field(default_factory=utcnow)
    # A requester's opt-in: its jobs' aggregation starts from the workers' skills on its earlier jobs.
    carry_over_skills: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})


class RetiredKey(SQLModel, table=True):
    """A key replaced by a rotation, still accepted until `valid_until` (the grace period in
    which its user's clients move to the new key). A revocation deletes these rows."""

    key_hash: str = Field(primary_key=True, max_length=64)
    account_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    valid_until: datetime


class Job(SQLModel, table=True):
    __table_args__ = (Index("ix_job_requester", "requester_id"), Index("ix_job_state", "state"))
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    requester_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    title: str = Field(max_length=200)
    instructions: str = Field(sa_column=Column(Text, nullable=False))
    annotation: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    overlap: int  # with dynamic overlap: the minimum
    overlap_max: int | None = None  # set: ask more workers while the aggregate is unsure
    target_confidence: float | None = None
    golden_ratio: float
    items_per_task: int
    reward_cents: int
    aggregation: str = Field(max_length=40)
    lease_seconds: int
    # Money (services/pricing.py, services/budget.py): what an item pays, the bonus, acceptance
    # rules, the budget put into the job, and the most one task entry can cost (held per lease).
    pricing: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    bonus: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    acceptance: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    budget_cents: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    item_hold_cents: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    currency: str = Field(default="USD", max_length=3, sa_column_kwargs={"server_default": "USD"})
    state: str = Field(default="draft", max_length=16)  # draft|running|paused|cancelled|completed
    # {"items", "pass_mark", "carry_over"}: workers pass a test on golden items first; NULL: none.
    # None is stored as SQL NULL (not JSON null): the lease statement tests `IS NULL`.
    qualification: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    # A golden item is shown to at most this many workers (NULL: twice the most answers an item
    # gets), so that how often an item comes back does not tell golden items from real ones.
    golden_max_views: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Item(SQLModel, table=True):
    __table_args__ = (
        Index("ix_item_job", "job_id", "id"),
        Index("ix_item_golden", "job_id", "id", postgresql_where=text("is_golden")),
        UniqueConstraint("job_id", "key", name="uq_item_job_key"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    job_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    # The requester's name for the item, unique in its job; an item uploaded without one gets
    # its id (as text) in the same transaction, so every stored item has a key. NULL only
    # between that insert and its update (`services/jobs.add_items`).
    key: str | None = Field(default=None, max_length=200)
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    is_golden: bool = False
    # The known answer of a golden item, never shown to workers: a classification label in
    # `answer`; for the other annotation types (`settings.AnnotationSpec`) the worker answer's
    # shape without `item_id` in `gold` (`{"objects": [...]}`, `{"labels": [...]}`).
    answer: str | None = Field(default=None, max_length=200)
    gold: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    shown: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # golden items: times leased
    created_at: datetime = Field(default_factory=utcnow)


class Slot(SQLModel, table=True):
    """One answer still wanted: (item, round). Deleted when leased, re-inserted on expiry."""

    __table_args__ = (
        UniqueConstraint("job_id", "item_id", "round", name="uq_slot_item_round"),
        Index("ix_slot_queue", "job_id", "round", "item_id"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    job_id: int = Field(sa_type=BigInteger)
    item_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    round: int


class Assignment(SQLModel, table=True):
    __table_args__ = (
        Index("ix_assignment_job_worker", "job_id", "worker_id"),
        Index("ix_assignment_worker", "worker_id", "id"),
        Index(
            "ix_assignment_open",
            "job_id",
            "expires_at",
            postgresql_where=text("state = 'leased'"),
        ),
        Index(
            "ix_assignment_undecided",
            "job_id",
            "id",
            postgresql_where=text("state = 'submitted' AND decision IS NULL"),
        ),
        Index(
            "uq_assignment_lease_key",
            "worker_id",
            "lease_key",
            unique=True,
            postgresql_where=text("lease_key IS NOT NULL"),
        ),
        Index("ix_assignment_worker_open", "worker_id", "job_id", postgresql_where=text("state = 'leased'")),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    job_id: int = Field(sa_type=BigInteger)
    worker_id: int = Field(sa_type=BigInteger)
    state: str = Field(default="leased", max_length=16)  # leased|submitted|skipped|expired|revoked
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    finished_at: datetime | None = None
    idempotency_key: str | None = Field(default=None, max_length=200)  # of the submit
    lease_key: str | None = Field(default=None, max_length=200)  # the lease's Idempotency-Key
    hold_cents: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    decision: str | None = Field(default=None, max_length=16)  # accepted | rejected (submitted ones)
    decision_reason: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = None
    paid_cents: int | None = None  # work + bonus, set when accepted


class AssignmentItem(SQLModel, table=True):
    """What a task holds; also the record that a worker has seen an item (never again)."""

    __table_args__ = (
        UniqueConstraint("job_id", "worker_id", "item_id", name="uq_seen_once"),
        Index("ix_assignment_item_assignment", "assignment_id"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    assignment_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    job_id: int = Field(sa_type=BigInteger)
    worker_id: int = Field(sa_type=BigInteger)
    item_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    round: int | None = None  # None for golden items
    position: int


class Answer(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("job_id", "item_id", "round", name="uq_answer_item_round"),
        UniqueConstraint("job_id", "item_id", "worker_id", name="uq_answer_item_worker"),
        Index("ix_answer_job_id", "job_id", "id"),
        Index("ix_answer_worker", "worker_id", "job_id"),
        # Golden answers not scored yet (annotation answers, scored off the submit): few rows.
        Index("ix_answer_unscored", "job_id", "id", postgresql_where=text("is_golden AND correct IS NULL")),
        CheckConstraint("(label IS NULL) <> (value IS NULL)", name="ck_answer_one_value"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    job_id: int = Field(sa_type=BigInteger)
    item_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    worker_id: int = Field(sa_type=BigInteger)
    assignment_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    round: int | None = None  # None for golden items
    # A classification answer is its `label`; any other type's answer is `value`, the worker's
    # answer without `item_id` (`{"objects": [...]}`, an empty list being "nothing to draw", or
    # `{"labels": [...]}`). Exactly one of the two is set (`ck_answer_one_value`).
    label: str | None = Field(default=None, max_length=200)
    value: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    is_golden: bool = False
    # Golden items only: `score` in [0, 1] against the known answer (`services/scoring.py`; NULL
    # for a classification answer, whose score is `correct`), and `correct` (the label is right,
    # or the score reaches `golden.PASS_SCORE`). Both NULL until an annotation answer is scored.
    correct: bool | None = None
    score: float | None = None
    excluded: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Qualification(SQLModel, table=True):
    """A worker's qualification for a job that asks for one: a test on golden items (`source`
    test, its assignment in `assignment_id`), or a record carried over from the requester's
    other jobs (`source` carried). One row per (job, worker); `failed` is final until an
    operator deletes the row."""

    __table_args__ = (UniqueConstraint("job_id", "worker_id", name="uq_qualification_job_worker"),)
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    job_id: int = Field(sa_type=BigInteger)
    worker_id: int = Field(sa_type=BigInteger)
    assignment_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    state: str = Field(default="pending", max_length=16)  # pending | passed | failed
    correct: int | None = None
    total: int | None = None
    source: str = Field(default="test", max_length=16)  # test | carried
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None


class Aggregate(SQLModel, table=True):
    job_id: int = Field(primary_key=True, sa_type=BigInteger)
    item_id: int = Field(sa_column=Column(BigId, primary_key=True))
    label: str | None = Field(default=None, max_length=200)  # classification
    value: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    confidence: float
    method: str = Field(max_length=60)
    version: str = Field(max_length=120)
    answers: int
    updated_at: datetime = Field(default_factory=utcnow)


class AggregationRun(SQLModel, table=True):
    """One aggregation of a job: what it used and what it produced."""

    __table_args__ = (
        Index("ix_aggregation_run_job", "job_id", "id"),
        Index("ix_aggregation_run_created", "created_at"),  # webhooks: the runs of the last hour
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    job_id: int = Field(sa_type=BigInteger)
    method: str = Field(max_length=60)
    version: str = Field(max_length=120)
    answers_used: int
    last_answer_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    items: int
    seconds: float
    # How much the workers agree (`services/aggregating.agreement_figures`): Krippendorff's
    # alpha for labels, mean pairwise IoU (OKS) of matched objects for geometry.
    agreement: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class WorkerQuality(SQLModel, table=True):
    job_id: int = Field(primary_key=True, sa_type=BigInteger)
    worker_id: int = Field(primary_key=True, sa_type=BigInteger)
    answers: int = 0
    golden_seen: int = 0
    golden_correct: int = 0
    golden_score: float | None = None  # the sum of golden scores (golden accuracy: its mean)
    golden_accuracy: float | None = None
    agreement: float | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Who did what to whom, when and why: bans, unbans (and later rule firings)."""

    __table_args__ = (Index("ix_audit_subject", "subject_type", "subject_id"),)
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    at: datetime = Field(default_factory=utcnow)
    actor_id: int | None = Field(default=None, sa_type=BigInteger)
    action: str = Field(max_length=40)
    subject_type: str = Field(max_length=20)
    subject_id: int = Field(sa_type=BigInteger)
    reason: str = Field(default="", max_length=500)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class QualityRule(SQLModel, table=True):
    """An operator's (global, `job_id` NULL) or a requester's (one job) condition and action."""

    __table_args__ = (Index("ix_rule_job", "job_id"),)
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    job_id: int | None = Field(default=None, sa_type=BigInteger)
    created_by: int = Field(sa_type=BigInteger)  # an account id
    condition: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    action: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class WorkerBlock(SQLModel, table=True):
    """A worker kept from one job, one requester's jobs, or (both NULL) all jobs, until `until`
    (or for good)."""

    __table_args__ = (Index("ix_block_worker", "worker_id", "job_id"),)
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    worker_id: int = Field(sa_type=BigInteger)
    job_id: int | None = Field(default=None, sa_type=BigInteger)
    requester_id: int | None = Field(default=None, sa_type=BigInteger)
    until: datetime | None = None
    reason: str = Field(default="", max_length=500)
    rule_id: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow)


class ReviewFlag(SQLModel, table=True):
    """A rule's 'look at this worker' for an operator."""

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    worker_id: int = Field(sa_type=BigInteger)
    job_id: int | None = Field(default=None, sa_type=BigInteger)
    rule_id: int | None = Field(default=None, sa_type=BigInteger)
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    resolved: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class LedgerTxn(SQLModel, table=True):
    """One balanced movement of money: its entries sum to zero. Append-only.

    `key` makes a movement happen once: a retried request, a re-run decision or payout
    finds its key taken (unique) and moves nothing."""

    __table_args__ = (
        Index("ix_ledger_txn_job", "job_id", "kind"),
        Index("ix_ledger_txn_assignment", "assignment_id"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    kind: str = Field(max_length=24)  # fund|budget|hold|release|work|reject|refund|payout
    key: str | None = Field(default=None, max_length=200, unique=True)
    job_id: int | None = Field(default=None, sa_type=BigInteger)
    assignment_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    run_id: int | None = Field(default=None, sa_type=BigInteger)
    actor_id: int | None = Field(default=None, sa_type=BigInteger)
    memo: str = Field(default="", max_length=300)
    created_at: datetime = Field(default_factory=utcnow)


class LedgerEntry(SQLModel, table=True):
    """One side of a movement: `amount` (minor units) added to `account`'s balance."""

    __table_args__ = (Index("ix_ledger_entry_account", "account", "id"), Index("ix_ledger_entry_txn", "txn_id"))
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    txn_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    account: str = Field(max_length=80)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)


class LedgerBalance(SQLModel, table=True):
    """The sum of an account's entries, kept in the same transaction as the entries (the lease
    checks a job's budget without summing its history); `ledger check` recomputes every one.
    Only the world outside (`external:*`) may go below zero: the database refuses the rest."""

    __table_args__ = (CheckConstraint("balance >= 0 OR account LIKE 'external:%'", name="ck_balance_not_negative"),)
    account: str = Field(primary_key=True, max_length=80)
    currency: str = Field(max_length=3)
    balance: int = Field(sa_column=Column(BigInteger, nullable=False))


class PayoutRun(SQLModel, table=True):
    """Pays every worker its balance once. `open` is true until the run is done and NULL after:
    unique, so at most one run is open at a time."""

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    state: str = Field(default="pending", max_length=16)  # pending | done
    open: bool | None = Field(default=True, unique=True)
    key: str | None = Field(default=None, max_length=200, unique=True)
    created_by: int | None = Field(default=None, sa_type=BigInteger)  # an account id
    currency: str = Field(default="USD", max_length=3)
    workers: int = 0
    total_cents: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class Webhook(SQLModel, table=True):
    """A URL an account registered to be told of `events` (requesters: their jobs'; operators:
    payout runs). Deliveries are signed with `secret`, which the API shows once, at registration;
    it is kept as it is (not hashed) because signing needs it."""

    __table_args__ = (Index("ix_webhook_account", "account_id", "id"),)
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    account_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=80)
    events: list[str] = Field(sa_column=Column(ARRAY(String(40)), nullable=False))
    description: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One event for one hook: the exact body every attempt sends (same event id, so a receiver
    dedupes by it), its state and the log of its attempts. `UNIQUE (webhook_id, event_key)`: an
    event found twice is still one delivery."""

    __table_args__ = (
        UniqueConstraint("webhook_id", "event_key", name="uq_delivery_hook_event"),
        Index("ix_delivery_hook", "webhook_id", "id"),
        Index("ix_delivery_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    webhook_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_key: str = Field(max_length=120)  # the event's id (`aggregation-17`): what receivers dedupe by
    event_type: str = Field(max_length=40)
    body: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default="pending", max_length=16)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime | None = None  # when the next attempt is due (pending ones)
    claimed_until: datetime | None = None  # an attempt in flight until then
    last_status: int | None = None  # the receiver's last HTTP status (None: no answer)
    last_error: str | None = Field(default=None, max_length=300)
    log: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
