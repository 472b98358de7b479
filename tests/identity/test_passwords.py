"""Argon2id hashing, verification, rehash detection and the password policy."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from aima.identity.errors import WeakPassword
from aima.identity.passwords import check_password_policy, hash_password, needs_rehash, verify_password


def test_hash_is_salted_argon2id_with_the_configured_parameters() -> None:
    first = hash_password("correct horse battery")
    second = hash_password("correct horse battery")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert first != second
    assert "correct horse battery" not in first


def test_verify_accepts_the_password_and_refuses_others_without_raising() -> None:
    stored = hash_password("correct horse battery")
    assert verify_password(stored, "correct horse battery") is True
    assert verify_password(stored, "correct horse batterY") is False
    assert verify_password(stored, "") is False
    assert verify_password("not a hash", "correct horse battery") is False


def test_hashes_made_with_weaker_parameters_need_a_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("correct horse battery")
    assert verify_password(weak, "correct horse battery") is True
    assert needs_rehash(weak) is True
    assert needs_rehash(hash_password("correct horse battery")) is False


def test_policy_requires_twelve_characters() -> None:
    with pytest.raises(WeakPassword):
        check_password_policy("elevenchars")
    with pytest.raises(ValueError, match="at least 12"):
        check_password_policy("")
    with pytest.raises(WeakPassword, match="at most"):
        check_password_policy("x" * 1025)
    check_password_policy("twelve chars")
