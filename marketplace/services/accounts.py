"""Accounts and their keys."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session

from marketplace.auth import ROLES, hash_key, new_key
from marketplace.errors import Invalid, NotFound
from marketplace.models import Account, AuditEvent, RetiredKey, utcnow


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


def rotate_key(session: Session, account_id: int, grace: timedelta) -> tuple[str, datetime]:
    """A new key for the account; the current one keeps working until the grace period ends
    (so its clients can move over). Returns the new key and when the old one stops."""
    account = _locked(session, account_id)
    until = utcnow() + grace
    session.add(RetiredKey(key_hash=account.key_hash, account_id=account_id, valid_until=until))
    key = new_key()
    account.key_hash = hash_key(key)
    session.add(account)
    session.add(
        AuditEvent(
            actor_id=account_id,
            action="rotate_key",
            subject_type="account",
            subject_id=account_id,
            details={"old_key_valid_until": until.isoformat()},
        )
    )
    return key, until


def revoke_keys(
    session: Session, account_id: int, actor_id: int, reason: str, reissue: bool
) -> tuple[list[str], str | None]:
    """An operator's revocation: every key of the account stops (its current one and any in a
    grace period); with `reissue`, a new key is made for the operator to hand over. Returns the
    key hashes to forget and the new key, if any."""
    account = _locked(session, account_id)
    retired = session.execute(
        delete(RetiredKey).where(RetiredKey.account_id == account_id).returning(RetiredKey.key_hash)
    )
    forgotten = [account.key_hash, *retired.scalars()]
    key = new_key() if reissue else None
    # Without a new key the account keeps a hash nobody holds the key of: it can sign in no more.
    account.key_hash = hash_key(key if key is not None else new_key())
    session.add(account)
    session.add(
        AuditEvent(
            actor_id=actor_id,
            action="revoke_keys",
            subject_type="account",
            subject_id=account_id,
            reason=reason,
            details={"reissued": reissue, "keys_revoked": len(forgotten)},
        )
    )
    return forgotten, key


def _locked(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id, with_for_update=True)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account
