"""Schema migrations with alembic, driven from code (`marketplace db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from marketplace.db import make_engine, normalise_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def revision(database_url: str, message: str) -> None:
    """Autogenerate a migration from the models (developers)."""
    command.revision(alembic_config(database_url), message=message, autogenerate=True)


def schema_problem(database_url: str) -> str | None:
    """What keeps the app from using this database's schema, in words, or None when it is at
    the code's head revision. Raises SQLAlchemyError when the database cannot be reached."""
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    if current is None:
        return "the database has no schema yet"
    if current != head:
        return f"the database schema is at revision {current}, this code needs {head}"
    return None


def is_current(database_url: str) -> bool:
    """Whether the database's schema is at this code's head (False when unreachable or behind)."""
    try:
        return schema_problem(database_url) is None
    except SQLAlchemyError:
        return False
