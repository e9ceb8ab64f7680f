"""Password hashing (argon2id) and the policy a new password must meet."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import InvalidInput

MIN_LENGTH = 10
MAX_LENGTH = 1000  # argon2 takes any length; this keeps a megabyte "password" from costing CPU

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


@cache
def _dummy_hash() -> str:
    """Verified against when there is no user, so that log-in takes as long either way.
    Made on first use: hashing costs argon2's 64 MiB, which no process should pay at import
    (the delivery worker never checks a password)."""
    return _hasher.hash("formrelay-no-such-user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if `password` matches; with no hash (no user, or none set) still spends the
    time a real check takes."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@cache
def _common_passwords() -> frozenset[str]:
    # zxcvbn ships the 30,000 most common passwords of its corpora; we check against them.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_new_password(password: str, *, email: str | None = None) -> None:
    """Raise InvalidInput saying what is wrong with a password chosen by a user."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"Choose a password of at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"Choose a password of at most {MAX_LENGTH} characters.")
    lowered = password.lower()
    if lowered in _common_passwords() or len(set(lowered)) < 4:
        raise InvalidInput("That password is too common; choose one that is harder to guess.")
    if email and lowered in (email.lower(), email.split("@")[0].lower()):
        raise InvalidInput("Choose a password that is not your e-mail address.")
