"""Accounts and their keys."""

from __future__ import annotations

from sqlmodel import Session

from marketplace.auth import ROLES, hash_key, new_key
from marketplace.errors import Invalid
from marketplace.models import Account


def create_account(session: Session, role: str, name: str) -> tuple[Account, str]:
    """Create an account and return it with its key; the key is not stored, only its hash."""
    if role not in ROLES:
        raise Invalid("role", f"must be one of {', '.join(ROLES)}")
    if not name or len(name) > 200:
        raise Invalid("name", "must be 1 to 200 characters")
    key = new_key()
    account = Account(role=role, name=name, key_hash=hash_key(key))
    session.add(account)
    session.flush()
    return account, key
