"""operations: retired keys (rotation with a grace period)

Revision ID: b7c41e2d9a10
Revises: 70f899e67193
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'b7c41e2d9a10'
down_revision: str | None = '70f899e67193'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'retiredkey',
        sa.Column('key_hash', sa.String(length=64), primary_key=True),
        sa.Column('account_id', sa.BigInteger(), nullable=False),
        sa.Column('valid_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    )
    op.create_index('ix_retiredkey_account_id', 'retiredkey', ['account_id'])


def downgrade() -> None:
    op.drop_index('ix_retiredkey_account_id', table_name='retiredkey')
    op.drop_table('retiredkey')
