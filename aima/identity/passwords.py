"""Argon2id password hashing (OWASP minimum parameters, sized for a small box) and the policy."""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from aima.identity.errors import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 1024

_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)  # Argon2id by default


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` in PHC string format (salted)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; False on mismatch or an unreadable hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def dummy_verify(password: str) -> None:
    """Spend as long as a real verification does, for users that do not exist."""
    verify_password(_dummy_hash(), password)


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def check_password_policy(password: str) -> None:
    """Raise `WeakPassword` unless ``password`` has between 12 and 1024 characters."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"password must have at most {MAX_LENGTH} characters")
