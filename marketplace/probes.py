"""Probes for load balancers and orchestrators: `/healthz` (the process answers) and `/readyz`
(it can reach PostgreSQL and Redis; 503 naming what it cannot, so traffic goes elsewhere)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from marketplace import queue
from marketplace.db import get_engine


def init_app(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Any:
        checks = {"database": _database_ok(app), "redis": _redis_ok(app)}
        ready = all(checks.values())
        body = {
            "status": "ok" if ready else "unavailable",
            "checks": {k: "ok" if v else "down" for k, v in checks.items()},
        }
        return body, 200 if ready else 503


def _database_ok(app: Flask) -> bool:
    try:
        with get_engine(app).connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False


def _redis_ok(app: Flask) -> bool:
    try:
        return bool(queue.get_redis(app).ping())
    except RedisError:
        return False
