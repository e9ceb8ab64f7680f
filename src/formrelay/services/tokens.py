"""Signed, expiring, single-use links: confirm an address, reset a password, sign in.

A token is signed with SECRET_KEY and a salt per purpose (a reset token is no confirmation
token), and carries the user's id, the user's session version and a random nonce. It dies:
- when it is older than its purpose's lifetime (TokenExpired);
- once it has been used: its sha256 is kept in used_tokens (TokenUsed);
- when the password changes, which raises the session version (TokenUsed: superseded).
Nothing here reads flask.request; callers pass the session and the settings.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from ..models import UsedToken, User, utcnow
from .errors import DomainError

if TYPE_CHECKING:  # formrelay.settings imports flask, which the domain never does
    from ..settings import Settings

CONFIRM = "confirm"
RESET = "reset"
SIGN_IN = "sign-in"
CHANGE_EMAIL = "change-email"
INVITE = "invite"

LIFETIMES = {
    CONFIRM: timedelta(days=3),
    RESET: timedelta(hours=1),
    SIGN_IN: timedelta(hours=24),
    CHANGE_EMAIL: timedelta(days=1),
    INVITE: timedelta(days=7),
}
# Where each link leads (the web blueprint serves these paths).
PATHS = {
    CONFIRM: "/confirm/",
    RESET: "/reset/",
    SIGN_IN: "/sign-in/",
    CHANGE_EMAIL: "/account/email/",
    INVITE: "/invitation/",
}


class TokenError(DomainError):
    """A link that cannot be followed; `status` is the HTTP status its page answers with."""

    status = 400


class TokenInvalid(TokenError):
    code = "TOKEN_INVALID"
    status = 400

    def __init__(
        self, message: str = "This link is not valid: check that it was copied whole."
    ) -> None:
        super().__init__(message)


class TokenExpired(TokenError):
    code = "TOKEN_EXPIRED"
    status = 410

    def __init__(self, message: str = "This link has expired: ask for a new one.") -> None:
        super().__init__(message)


class TokenUsed(TokenError):
    code = "TOKEN_USED"
    status = 410

    def __init__(
        self, message: str = "This link has been used already: ask for a new one."
    ) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class Claim:
    """What a valid token says: whose it is and, for an address change, the new address."""

    user: User
    email: str | None
    issued_at: datetime
    digest: str


def issue(settings: Settings, purpose: str, user: User, *, email: str | None = None) -> str:
    """A token for `purpose` naming `user` (and `email`, for confirming an address)."""
    payload: dict[str, Any] = {
        "u": user.id,
        "v": user.session_version,
        "n": secrets.token_urlsafe(12),
    }
    if email is not None:
        payload["e"] = email
    return _serializer(settings, purpose).dumps(payload)


def link(settings: Settings, purpose: str, token: str) -> str:
    """The absolute URL a mail or the CLI gives out for `token`."""
    return f"{settings.base_url}{PATHS[purpose]}{token}"


def issue_link(settings: Settings, purpose: str, user: User, *, email: str | None = None) -> str:
    return link(settings, purpose, issue(settings, purpose, user, email=email))


def check(
    session: Session,
    settings: Settings,
    purpose: str,
    token: str,
    *,
    now: datetime | None = None,
) -> Claim:
    """The claim of a token that may still be followed, without using it up.

    Raises TokenInvalid (tampered, wrong purpose, no such user), TokenExpired (older than
    the purpose's lifetime) or TokenUsed (followed already, or issued before the password
    last changed).
    """
    try:
        payload, signed_at = _serializer(settings, purpose).loads(token, return_timestamp=True)
    except BadSignature:
        raise TokenInvalid() from None
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), int):
        raise TokenInvalid()
    issued_at = signed_at if signed_at.tzinfo else signed_at.replace(tzinfo=UTC)
    if (now or utcnow()) - issued_at > LIFETIMES[purpose]:
        raise TokenExpired()
    digest = hashlib.sha256(token.encode()).hexdigest()
    if session.get(UsedToken, digest) is not None:
        raise TokenUsed()
    user = session.get(User, payload["u"])
    if user is None or user.disabled:
        raise TokenInvalid()
    if user.session_version != payload.get("v"):
        raise TokenUsed("This link was sent before the password last changed: ask for a new one.")
    email = payload.get("e")
    return Claim(user, email if isinstance(email, str) else None, issued_at, digest)


def consume(
    session: Session,
    settings: Settings,
    purpose: str,
    token: str,
    *,
    now: datetime | None = None,
) -> Claim:
    """Check a token (see check) and record it as used, in the caller's transaction."""
    claim = check(session, settings, purpose, token, now=now)
    session.add(UsedToken(digest=claim.digest))
    session.flush()
    return claim


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in LIFETIMES:
        raise ValueError(f"no such token purpose: {purpose!r}")
    return URLSafeTimedSerializer(settings.secret_key, salt=f"formrelay.{purpose}")
