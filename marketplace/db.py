"""Engine and session wiring.

One engine per app. SQLite runs every transaction as `BEGIN IMMEDIATE` (a single writer,
as the design allows); PostgreSQL uses READ COMMITTED with row locks on the hot path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

# The lease/submit services get an engine of their own on PostgreSQL (`get_hot_engine`), whose
# connections prepare only what asks for it, the hot path's hand-written statements
# (`services/pool_pg.py`, `prepare=True`), and always run those on their generic plan, checked
# in `bench/explain_hot.sql`. With PostgreSQL's default choice (`plan_cache_mode = auto`) the
# submit was planned afresh on every call (its array parameters make the generic plan's
# estimate look dearer than a custom one: ~25% of the backends' CPU in a `perf` profile of the
# benchmark), and a plan could flip when statistics changed. The few SQLAlchemy statements
# those services run there (reclaiming overdue leases, qualification) stay unnamed, planned for
# their actual values. Everything else keeps psycopg's default (prepare after 5 uses, the
# server's choice of plan): on this engine's terms the acceptance job ran ~40% longer, parsing
# and planning its ORM statements on every call. (`prepare_threshold=None` would refuse
# `prepare=True` too: a threshold never reached instead.)
HOT_PG_CONNECT_ARGS: dict[str, Any] = {
    "prepare_threshold": 2**62,
    "options": "-c plan_cache_mode=force_generic_plan",
}


def normalise_url(url: str) -> str:
    """Use psycopg 3 for `postgresql://` URLs (SQLAlchemy's default driver is psycopg2)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, *, hot: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`; `hot`: with the hot path's connection settings on PostgreSQL."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _make_sqlite_serial(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", False)
    if hot:
        connect_args = {**HOT_PG_CONNECT_ARGS, **kwargs.get("connect_args", {})}
        options = parsed.query.get("options")
        if options:  # the URL's own server options come first
            connect_args["options"] = f"{options} {connect_args['options']}"
        kwargs["connect_args"] = connect_args
    return create_engine(url, **kwargs)


def _make_sqlite_serial(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # Threads of one process queue on a lock instead of on SQLite's busy handler, which
    # sleeps in growing steps and made p99 latency seconds long under 16 connections.
    writer = threading.Lock()
    holder = threading.local()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if not getattr(holder, "held", False):
            writer.acquire()
            holder.held = True
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine.pool, "checkin")
    def _release(*_args: Any) -> None:
        """Released when the connection goes back to the pool, i.e. after commit or rollback."""
        if getattr(holder, "held", False):
            holder.held = False
            writer.release()


def is_postgres(session: Session) -> bool:
    bind = session.get_bind()
    return bind.dialect.name == "postgresql"


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["engine"] = engine
    postgres = engine.dialect.name == "postgresql"
    app.extensions["hot_engine"] = make_engine(app.config["DATABASE_URL"], hot=True) if postgres else engine

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def get_engine(app: Flask | None = None) -> Engine:
    return (app or current_app).extensions["engine"]  # type: ignore[no-any-return]


def get_hot_engine(app: Flask | None = None) -> Engine:
    """The engine of the lease and submit services (see HOT_PG_CONNECT_ARGS); on SQLite, the one engine."""
    return (app or current_app).extensions["hot_engine"]  # type: ignore[no-any-return]


def dispose(app: Flask) -> None:
    """Close the app's pooled connections."""
    get_engine(app).dispose()
    get_hot_engine(app).dispose()


def get_session() -> Session:
    """The request's session, opened lazily and closed at teardown."""
    if "db_session" not in g:
        g.db_session = Session(get_engine(), expire_on_commit=False)
    return g.db_session  # type: ignore[no-any-return]


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error (jobs, CLI)."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
