"""Cursors for the pool's statements: raw psycopg on a connection of the hot engine's pool
(`db.get_hot_engine`: statements prepared on first use and always on their generic plan), no
SQLAlchemy Session.

Why not SQLAlchemy here: the benchmark (`bench/hotpath.py`) measured ~0.33 ms of client CPU per
`select()` through SQLAlchemy against ~0.07 ms for a prepared psycopg statement (~0.57 ms with a
Session's begin/commit/close around it), and the old path took ~20 statements per cycle.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from psycopg.rows import class_row
from sqlalchemy import Engine

_CURSOR = "marketplace.hot_cursor"
_database_names: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def database_key(engine: Engine) -> str:
    """The engine's URL as a key of per-process caches (rendering it costs ~30 us)."""
    name = _database_names.get(engine)
    if name is None:
        name = _database_names[engine] = str(engine.url)
    return name


def compact(sql: str) -> str:
    """The statement without `--` comments and the spaces around ( ) , = < > * + (none of our
    string literals holds those): what the server parses is shorter."""
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = re.sub(r"\s+", " ", sql).strip()
    return re.sub(r" ?([(),=<>*+]) ?", r"\1", sql)


@dataclass(frozen=True)
class Statement:
    """A pool statement with PostgreSQL's own placeholders ($1, $2, ...), run on psycopg's
    `RawCursor`: no placeholder conversion at run time. psycopg converts %(name)s placeholders on
    every call and caches the conversion only for statements up to 4096 bytes (a longer one was
    re-split by a regex each time: ~0.2 ms of API CPU for the lease). Written with %(name)s and
    converted once here; `args` puts a parameter dict in order."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, sql: str) -> Statement:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        return cls(re.sub(r"%\((\w+)\)s", number, compact(sql)), tuple(names))

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


def _cursor(pooled: Any) -> Any:
    """The cursor kept with the pooled connection (made once, reused): a `RawCursor`."""
    cur = pooled.info.get(_CURSOR)
    if cur is None or cur.closed:
        cur = pooled.info[_CURSOR] = psycopg.RawCursor(pooled.driver_connection)
    return cur


@contextmanager
def transaction(engine: Engine) -> Iterator[Any]:
    """A cursor in a transaction of its own: committed when the block ends, rolled back when it
    raises; the connection goes back to the pool, or is dropped when it broke (a server restart,
    a lost connection: SQLAlchemy never sees these raw errors, so it would pool it again)."""
    pooled = engine.raw_connection()
    try:
        cur = _cursor(pooled)
        try:
            yield cur
        except BaseException:
            _rollback(pooled)
            raise
        pooled.commit()
    except BaseException:
        _drop_if_broken(pooled)
        raise
    finally:
        pooled.close()


@contextmanager
def autocommit(engine: Engine) -> Iterator[Any]:
    """A cursor in autocommit mode: each statement is a transaction of its own (no BEGIN or
    COMMIT round trips). The connection goes back to the pool as it came, or is dropped when it
    broke."""
    pooled = engine.raw_connection()
    try:
        conn: Any = pooled.driver_connection
        cur = _cursor(pooled)
        conn.autocommit = True
        try:
            yield cur
        finally:
            if not _drop_if_broken(pooled):
                try:
                    conn.autocommit = False
                except psycopg.Error:  # a broken connection: not for the pool
                    pooled.invalidate()
    finally:
        pooled.close()


def _rollback(pooled: Any) -> None:
    try:
        pooled.rollback()
    except psycopg.Error:  # a broken connection: not for the pool
        pooled.invalidate()


def _drop_if_broken(pooled: Any) -> bool:
    """Invalidate the pooled connection when psycopg saw it break (closed by the server, cut);
    True when it did. psycopg marks a connection `broken` on such an error, not on a refusal
    such as a constraint violation, after which the connection stays good."""
    conn = pooled.driver_connection
    if conn is None:  # already invalidated
        return True
    if conn.closed or conn.broken:
        pooled.invalidate()
        return True
    return False


@cache
def _factory(row_type: type[Any]) -> Any:
    return class_row(row_type)


def fetch_one(cur: Any, row_type: type[Any], statement: Statement, params: dict[str, Any]) -> Any:
    """Run a prepared statement and read its one row (or None) as `row_type`, by column name."""
    cur.row_factory = _factory(row_type)
    return cur.execute(statement.sql, statement.args(params), prepare=True).fetchone()


def fetch_all(cur: Any, row_type: type[Any], statement: Statement, params: dict[str, Any]) -> list[Any]:
    """Run a prepared statement and read its rows as `row_type`, by column name."""
    cur.row_factory = _factory(row_type)
    return cur.execute(statement.sql, statement.args(params), prepare=True).fetchall()  # type: ignore[no-any-return]
