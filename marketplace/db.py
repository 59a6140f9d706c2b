"""Engine and session wiring: PostgreSQL only, READ COMMITTED with row locks on the hot path.

With no `DATABASE_URL`, `config.database_url` starts (or reuses) an embedded server.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import Flask, current_app, g
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError, SQLAlchemyError
from sqlmodel import Session, create_engine

# The lease/submit services get an engine of their own on PostgreSQL (`get_hot_engine`), whose
# connections prepare only what asks for it, the hot path's hand-written statements
# (`marketplace/pool`, `prepare=True`), and always run those on their generic plan, checked
# in `bench/explain_hot.sql`. With PostgreSQL's default choice (`plan_cache_mode = auto`) the
# submit was planned afresh on every call (its array parameters make the generic plan's
# estimate look dearer than a custom one: ~25% of the backends' CPU in a `perf` profile of the
# benchmark), and a plan could flip when statistics changed. The few SQLAlchemy statements
# those services run there (reclaiming overdue leases, qualification) stay unnamed, planned for
# their actual values. Everything else keeps psycopg's default (prepare after 5 uses, the
# server's choice of plan): on this engine's terms the acceptance job ran ~40% longer, parsing
# and planning its ORM statements on every call. (`prepare_threshold=None` would refuse
# `prepare=True` too: a threshold never reached instead.)
# JIT is off there too: a generic plan's cost estimate does not know how few rows a lease takes,
# and on a job of 2.35M slots PostgreSQL JIT-compiled the lease on every call (1.0-1.35 s a
# lease on every job instead of 3-10 ms).
HOT_PG_CONNECT_ARGS: dict[str, Any] = {
    "prepare_threshold": 2**62,
    "options": "-c plan_cache_mode=force_generic_plan -c jit=off",
}


def normalise_url(url: str) -> str:
    """Use psycopg 3 for `postgresql://` URLs (SQLAlchemy's default driver is psycopg2)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, *, hot: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`; `hot`: with the hot path's connection settings."""
    url = normalise_url(url)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", False)
    if hot:
        connect_args = {**HOT_PG_CONNECT_ARGS, **kwargs.get("connect_args", {})}
        options = make_url(url).query.get("options")
        if options:  # the URL's own server options come first
            connect_args["options"] = f"{options} {connect_args['options']}"
        kwargs["connect_args"] = connect_args
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkout", _refuse_dead_connection)
    return engine


def idle_connection_alive(connection: psycopg.Connection[Any]) -> bool:
    """Whether a pooled (idle) connection can still be used, without a round trip.

    A server that stops or restarts sends its clients a last message and closes their sockets;
    an idle connection whose socket has anything to read is therefore gone (or, rarely, got a
    settings report after a reload: reconnecting costs little either way). A poll with no wait
    costs about 2 us, against a round trip (`pool_pre_ping`) on every lease and submit. A
    connection cut without a word (a network partition) still fails at its first use, and is
    dropped then (`pool/connection.py`, SQLAlchemy's own disconnect handling).
    """
    if connection.closed or connection.broken:
        return False
    try:
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (OSError, psycopg.Error):
        return False


def _refuse_dead_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: a dead connection makes SQLAlchemy drop it, and every connection pooled
    before it (after a restart they are all dead), and connect anew (or raise while the server
    is down: the request answers 503, `errors.database_unavailable`)."""
    if not idle_connection_alive(dbapi_connection):
        raise InvalidatePoolError("the server closed this pooled connection")


def init_app(app: Flask) -> None:
    app.extensions["engine"] = make_engine(app.config["DATABASE_URL"])
    app.extensions["hot_engine"] = make_engine(app.config["DATABASE_URL"], hot=True)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            close_quietly(session)


def close_quietly(session: Session) -> None:
    """Close a request's session; a connection that died meanwhile (a server restarting) is
    dropped instead of raising after the response was chosen (a teardown that raises reaches
    gunicorn: an HTML 500 where the request had its answer, often a 503)."""
    try:
        session.close()
    except SQLAlchemyError:
        session.invalidate()


def get_engine(app: Flask | None = None) -> Engine:
    return (app or current_app).extensions["engine"]  # type: ignore[no-any-return]


def get_hot_engine(app: Flask | None = None) -> Engine:
    """The engine of the lease and submit services (see HOT_PG_CONNECT_ARGS)."""
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
