"""The migrated schema: what the models say, and ids as wide as the API takes."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from marketplace.db import make_engine
from marketplace.migrate import alembic_config


def test_the_migrations_match_the_models(database_url: str) -> None:
    command.check(alembic_config(database_url))  # raises when autogenerate would find a change


def test_every_id_column_is_a_bigint(database_url: str) -> None:
    """The API takes ids up to 2**63 - 1; an integer column made PostgreSQL fail such a query."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            narrow = (
                connection.execute(
                    text(
                        "SELECT table_name || '.' || column_name FROM information_schema.columns "
                        "WHERE table_schema = 'public' "
                        "AND (column_name IN ('id', 'created_by') OR column_name LIKE '%\\_id') "
                        "AND data_type <> 'bigint' ORDER BY 1"
                    )
                )
                .scalars()
                .all()
            )
            sequences = (
                connection.execute(
                    text("SELECT sequence_name FROM information_schema.sequences WHERE data_type <> 'bigint'")
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    assert narrow == [] and sequences == []
