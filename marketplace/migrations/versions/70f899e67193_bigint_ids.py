"""bigint ids

Revision ID: 70f899e67193
Revises: c0a1f1ca7e01
Create Date: 2026-11-29 04:01:03.851493
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = '70f899e67193'
down_revision: str | None = 'c0a1f1ca7e01'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Every id and every column that holds one (`*_id`, `created_by`) is a bigint: the ids the API takes go up to 2**63 - 1
# (`schemas.MAX_ID`), and a larger one than an integer column holds made PostgreSQL fail the
# query (a 500) instead of finding nothing. One ALTER per table (one rewrite). SQLite keeps
# 64-bit integers in any INTEGER column: nothing to do there.
COLUMNS: dict[str, tuple[str, ...]] = {
    'aggregate': ('job_id',),
    'aggregationrun': ('id', 'job_id'),
    'answer': ('job_id', 'worker_id'),
    'assignment': ('job_id', 'worker_id'),
    'assignmentitem': ('job_id', 'worker_id'),
    'auditevent': ('actor_id', 'subject_id'),
    'ledgertxn': ('job_id', 'run_id', 'actor_id'),
    'qualification': ('job_id', 'worker_id'),
    'payoutrun': ('created_by',),
    'qualityrule': ('job_id', 'created_by'),
    'reviewflag': ('worker_id', 'job_id', 'rule_id'),
    'slot': ('job_id',),
    'workerblock': ('worker_id', 'job_id', 'requester_id', 'rule_id'),
    'workerquality': ('job_id', 'worker_id'),
}


def _alter(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(f'ALTER COLUMN "{column}" TYPE {kind}' for column in columns)
        op.execute(f'ALTER TABLE "{table}" {changes}')
    op.execute(f"ALTER SEQUENCE aggregationrun_id_seq AS {kind}")


def upgrade() -> None:
    _alter("bigint")


def downgrade() -> None:
    _alter("integer")
