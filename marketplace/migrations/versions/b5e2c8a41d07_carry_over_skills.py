"""carry over skills

Revision ID: b5e2c8a41d07
Revises: d4e8a2c61f03
Create Date: 2026-11-30 17:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b5e2c8a41d07'
down_revision: str | None = 'd4e8a2c61f03'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A requester's opt-in: aggregation starts each of its jobs from its workers' skills on
    # its earlier jobs.
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('carry_over_skills', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('carry_over_skills')
