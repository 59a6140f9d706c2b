"""item key: the requester's name for each item, unique per job

Revision ID: b7e4d2a9c613
Revises: b7c41e2d9a10
Create Date: 2026-11-30 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401 - autogenerate renders sqlmodel types
from alembic import op


revision: str = 'b7e4d2a9c613'
down_revision: str | None = 'b7c41e2d9a10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
    # Items stored before keys existed are named by their id, as new items without a key are.
    op.execute("UPDATE item SET key = CAST(id AS VARCHAR(200)) WHERE key IS NULL")
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_item_job_key', ['job_id', 'key'])


def downgrade() -> None:
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.drop_constraint('uq_item_job_key', type_='unique')
        batch_op.drop_column('key')
