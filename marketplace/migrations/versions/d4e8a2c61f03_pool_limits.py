"""pool limits: lease idempotency keys, open-lease caps, golden items shown at most so often

Revision ID: d4e8a2c61f03
Revises: b7e4d2a9c613
Create Date: 2026-11-30 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd4e8a2c61f03'
down_revision: str | None = 'b7e4d2a9c613'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A retried lease with the same Idempotency-Key returns the same task.
    op.add_column('assignment', sa.Column('lease_key', sa.String(length=200), nullable=True))
    op.create_index(
        'uq_assignment_lease_key', 'assignment', ['worker_id', 'lease_key'], unique=True,
        postgresql_where=sa.text('lease_key IS NOT NULL'),
    )
    # A worker's open leases, counted on every lease (the cap): only the open ones are indexed.
    op.create_index(
        'ix_assignment_worker_open', 'assignment', ['worker_id', 'job_id'],
        postgresql_where=sa.text("state = 'leased'"),
    )
    # How often each golden item was shown; a job caps it (NULL: twice the job's overlap).
    op.add_column('item', sa.Column('shown', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('job', sa.Column('golden_max_views', sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column('job', 'golden_max_views')
    op.drop_column('item', 'shown')
    op.drop_index('ix_assignment_worker_open', table_name='assignment')
    op.drop_index('uq_assignment_lease_key', table_name='assignment')
    op.drop_column('assignment', 'lease_key')
