"""webhooks: registered URLs and their deliveries (one per hook and event), runs by time

Revision ID: d556b73ab611
Revises: e5c8a1f3d702
Create Date: 2026-11-30 18:11:32.933658
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401 - autogenerate renders sqlmodel types
from alembic import op

revision: str = 'd556b73ab611'
down_revision: str | None = 'e5c8a1f3d702'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('webhook',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('events', sa.ARRAY(sa.String(length=40)), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_webhook_account', 'webhook', ['account_id', 'id'], unique=False)
    op.create_table('webhookdelivery',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('webhook_id', sa.BigInteger(), nullable=False),
    sa.Column('event_key', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('claimed_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('log', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('webhook_id', 'event_key', name='uq_delivery_hook_event')
    )
    op.create_index('ix_delivery_due', 'webhookdelivery', ['next_attempt_at'], unique=False, postgresql_where=sa.text("state = 'pending'"))
    op.create_index('ix_delivery_hook', 'webhookdelivery', ['webhook_id', 'id'], unique=False)
    op.create_index('ix_aggregation_run_created', 'aggregationrun', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_aggregation_run_created', table_name='aggregationrun')
    op.drop_index('ix_delivery_hook', table_name='webhookdelivery')
    op.drop_index('ix_delivery_due', table_name='webhookdelivery', postgresql_where=sa.text("state = 'pending'"))
    op.drop_table('webhookdelivery')
    op.drop_index('ix_webhook_account', table_name='webhook')
    op.drop_table('webhook')
