"""Password hashing (argon2id) and the password policy (security.md §2).

The hasher is module level so the test suite can swap in cheap parameters (hashing with the
production parameters costs ~100 ms); production code always goes through ``hash_password`` /
``verify_password``, which read the current hasher.
"""

from __future__ import annotations

import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 128

PRODUCTION_PARAMETERS = {"time_cost": 3, "memory_cost": 65536, "parallelism": 4, "hash_len": 32, "salt_len": 16}


def production_hasher() -> PasswordHasher:
    p = PRODUCTION_PARAMETERS
    return PasswordHasher(
        time_cost=p["time_cost"],
        memory_cost=p["memory_cost"],
        parallelism=p["parallelism"],
        hash_len=p["hash_len"],
        salt_len=p["salt_len"],
    )


_hasher: PasswordHasher = production_hasher()
_dummy: tuple[PasswordHasher, str] | None = None


def use_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Swap the hasher (tests); returns the previous one."""
    global _hasher, _dummy
    previous, _hasher, _dummy = _hasher, hasher, None
    return previous


def current_hasher() -> PasswordHasher:
    return _hasher


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def verify_dummy(password: str) -> None:
    """Spend the same work as a real verification (unknown email at login: no timing oracle)."""
    global _dummy
    if _dummy is None or _dummy[0] is not _hasher:
        _dummy = (_hasher, _hasher.hash("codex-dummy-password-never-matches"))
    verify_password(_dummy[1], password)


def policy_errors(password: str) -> list[str]:
    """Messages for every policy rule ``password`` breaks (empty when it is acceptable)."""
    errors: list[str] = []
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        errors.append(f"Length must be between {MIN_LENGTH} and {MAX_LENGTH}.")
    categories = {unicodedata.category(char) for char in password}
    if "Lu" not in categories:
        errors.append("Must contain at least one upper-case letter.")
    if "Ll" not in categories:
        errors.append("Must contain at least one lower-case letter.")
    if "Nd" not in categories:
        errors.append("Must contain at least one digit.")
    return errors
