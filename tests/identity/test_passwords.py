"""Password hashing parameters and policy (security.md §2)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type

from app.identity import passwords


def test_production_parameters_are_the_specified_argon2id() -> None:
    hasher = passwords.production_hasher()
    params = hasher._parameters
    assert params.type is Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 65536, 4)
    assert (params.hash_len, params.salt_len) == (32, 16)


def test_module_default_hasher_is_the_production_one() -> None:
    # The autouse fixture swapped in a cheap one; restore to look at the import-time default.
    cheap = passwords.use_hasher(passwords.production_hasher())
    try:
        assert passwords.current_hasher()._parameters == passwords.production_hasher()._parameters
    finally:
        passwords.use_hasher(cheap)


def test_hash_verify_and_rehash_when_parameters_change() -> None:
    stored = passwords.hash_password("Str0ngpass")
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password(stored, "Str0ngpass")
    assert not passwords.verify_password(stored, "Str0ngpasS")
    assert not passwords.verify_password("not-a-hash", "Str0ngpass")
    assert not passwords.needs_rehash(stored)
    previous = passwords.use_hasher(PasswordHasher(time_cost=2, memory_cost=8, parallelism=1))
    try:
        assert passwords.needs_rehash(stored)
        assert passwords.verify_password(stored, "Str0ngpass")  # old hashes still verify
    finally:
        passwords.use_hasher(previous)


def test_dummy_verification_never_matches() -> None:
    passwords.verify_dummy("anything")  # no exception, no result: only the work


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("Str0ngpass", True),
        ("Äbc1defg", True),  # Unicode upper-case counts
        ("ßtr0ngpÀss", True),
        ("Abcdef1", False),  # 7 characters
        ("A" * 64 + "a" * 63 + "1", True),  # 128
        ("A" * 64 + "a" * 64 + "1", False),  # 129
        ("str0ngpass", False),  # no upper
        ("STR0NGPASS", False),  # no lower
        ("Strongpass", False),  # no digit
        ("Strongpass٣", True),  # Arabic-Indic digit is a decimal digit (Nd)
    ],
)
def test_policy(password: str, ok: bool) -> None:
    assert (passwords.policy_errors(password) == []) is ok
