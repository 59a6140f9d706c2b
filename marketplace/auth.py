"""Bearer keys: random, shown once, stored as SHA-256; role checks for the views."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request
from flask_smorest import abort
from sqlalchemy import select

from marketplace.db import get_session
from marketplace.models import Account, RetiredKey, utcnow

ROLES = ("requester", "worker", "operator")
KEY_PREFIX = "mk_"
# A key's account is cached this long in each process: a revocation or an expired grace
# period takes effect everywhere within this bound (at once in the process that made it).
CACHE_SECONDS = 5.0
_cache: dict[str, tuple[float, Principal | None]] = {}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    id: int
    role: str
    status: str


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def lookup(key_hash: str) -> Principal | None:
    """Find the key's account (its current key, or a retired one within its grace period);
    cached for `CACHE_SECONDS` to keep the hot path to its work."""
    now = time.monotonic()
    hit = _cache.get(key_hash)
    if hit and hit[0] > now:
        return hit[1]
    session = get_session()
    columns = select(Account.id, Account.role, Account.status)
    row = session.execute(columns.where(Account.key_hash == key_hash)).first()
    if row is None:
        retired = select(RetiredKey.account_id).where(
            RetiredKey.key_hash == key_hash, RetiredKey.valid_until > utcnow()
        )
        row = session.execute(columns.where(Account.id == retired.scalar_subquery())).first()
    principal = Principal(row.id, row.role, row.status) if row else None
    if len(_cache) > 100_000:
        _cache.clear()
    _cache[key_hash] = (now + CACHE_SECONDS, principal)
    return principal


def forget(key_hash: str | None = None) -> None:
    """Drop cached principals (tests, status changes)."""
    if key_hash is None:
        _cache.clear()
    else:
        _cache.pop(key_hash, None)


def current_principal() -> Principal:
    return cast(Principal, g.principal)


def require(*roles: str) -> Callable[[F], F]:
    """Check the bearer key and the caller's role before the view runs."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                abort(401, message="missing bearer key in the Authorization header")
            principal = lookup(hash_key(key.strip()))
            if principal is None:
                abort(401, message="unknown key")
            if principal.role not in roles:
                abort(403, message=f"this endpoint is for: {', '.join(roles)}")
            g.principal = principal
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator
