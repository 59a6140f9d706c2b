"""annotation values: answers, golden answers and aggregates that are not one label

Boxes, polygons, keypoints and label sets are stored as JSON beside the classification label
(which keeps its column and its hot path): `answer.value`, `item.gold`, `aggregate.value`.
Golden annotation answers are scored off the submit (`answer.score`); the agreement figures
of an aggregation run and a worker's sum of golden scores are kept with them.

Revision ID: e5c8a1f3d702
Revises: b5e2c8a41d07
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e5c8a1f3d702'
down_revision: str | None = 'b5e2c8a41d07'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('item', sa.Column('gold', sa.JSON(none_as_null=True), nullable=True))
    op.alter_column('answer', 'label', existing_type=sa.String(length=200), nullable=True)
    op.add_column('answer', sa.Column('value', sa.JSON(none_as_null=True), nullable=True))
    op.add_column('answer', sa.Column('score', sa.Float(), nullable=True))
    op.create_check_constraint('ck_answer_one_value', 'answer', '(label IS NULL) <> (value IS NULL)')
    op.create_index(
        'ix_answer_unscored', 'answer', ['job_id', 'id'], postgresql_where=sa.text('is_golden AND correct IS NULL')
    )
    op.alter_column('aggregate', 'label', existing_type=sa.String(length=200), nullable=True)
    op.add_column('aggregate', sa.Column('value', sa.JSON(none_as_null=True), nullable=True))
    op.add_column('aggregationrun', sa.Column('agreement', sa.JSON(none_as_null=True), nullable=True))
    op.add_column('workerquality', sa.Column('golden_score', sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column('workerquality', 'golden_score')
    op.drop_column('aggregationrun', 'agreement')
    op.execute("DELETE FROM aggregate WHERE label IS NULL")
    op.drop_column('aggregate', 'value')
    op.alter_column('aggregate', 'label', existing_type=sa.String(length=200), nullable=False)
    op.drop_index('ix_answer_unscored', table_name='answer')
    op.drop_constraint('ck_answer_one_value', 'answer', type_='check')
    op.execute("DELETE FROM answer WHERE label IS NULL")
    op.drop_column('answer', 'score')
    op.drop_column('answer', 'value')
    op.alter_column('answer', 'label', existing_type=sa.String(length=200), nullable=False)
    op.drop_column('item', 'gold')
