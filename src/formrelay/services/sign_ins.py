"""Sign-ins: a row per browser signed in, which the session and "Remember me" cookies name.

A cookie opens the dashboard only while its row lives, so that logging out (which deletes
the row) ends every copy of that browser's cookies, and the account's other browsers carry
on. docs/dashboard.md ("Logging in and out") says what a user sees.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..models import SignIn, User, utcnow

# "Remember me" keeps a browser signed in as long as Flask-Login's cookie lives (web/security.py
# sets the cookie's duration from this). Without it, a browser left unused for a day is signed
# out: its cookie lasts until the browser closes, and browsers that restore tabs never close.
REMEMBERED_FOR = timedelta(days=365)
IDLE_LIMIT = timedelta(days=1)
# A request moves "last seen" (and an unremembered sign-in's expiry) at most this often, so
# that browsing the dashboard does not write to the database on every page.
TOUCH_EVERY = timedelta(minutes=5)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def begin(session: Session, user: User, *, remembered: bool, user_agent: str) -> str:
    """Record a new sign-in of `user` and return its token for the cookies; the account's
    expired sign-ins are deleted on the way."""
    now = utcnow()
    session.execute(delete(SignIn).where(SignIn.user_id == user.id, SignIn.expires_at <= now))
    token = secrets.token_urlsafe(24)
    session.add(
        SignIn(
            token_digest=digest(token),
            user_id=user.id,
            remembered=remembered,
            user_agent=describe_agent(user_agent),
            created_at=now,
            last_seen_at=now,
            expires_at=now + (REMEMBERED_FOR if remembered else IDLE_LIMIT),
        )
    )
    session.flush()
    return token


def find(session: Session, cookie_id: str) -> SignIn | None:
    """The sign-in a cookie's id ("<user id>:<session version>:<token>") names, if it is
    alive and its user may still use it (not disabled, the same session version)."""
    user_id, version, token = [*cookie_id.split(":", 2), "", ""][:3]
    if not (user_id.isdigit() and version.isdigit() and token):
        return None
    found = session.scalar(select(SignIn).where(SignIn.token_digest == digest(token)))
    if found is None or found.user_id != int(user_id) or found.expires_at <= utcnow():
        return None
    if found.user.session_version != int(version) or found.user.disabled:
        return None
    return found


def touch_due(sign_in: SignIn) -> bool:
    """Whether TOUCH_EVERY has passed since the sign-in was last marked as seen."""
    return utcnow() - sign_in.last_seen_at >= TOUCH_EVERY


def touch(session: Session, sign_in: SignIn) -> None:
    """Mark the sign-in as seen now, and move an unremembered one's expiry with it (an
    UPDATE of its own, for a transaction begun after the one that found it)."""
    now = utcnow()
    expires = {} if sign_in.remembered else {"expires_at": now + IDLE_LIMIT}
    session.execute(
        update(SignIn)
        .where(SignIn.id == sign_in.id, SignIn.last_seen_at <= now - TOUCH_EVERY)
        .values(last_seen_at=now, **expires)
    )


def end(session: Session, token: str) -> None:
    """Delete the sign-in with this token (logging out); nothing if there is none."""
    session.execute(delete(SignIn).where(SignIn.token_digest == digest(token)))


def end_all(session: Session, user: User) -> int:
    """Delete every sign-in of `user` (every browser signs out); returns how many."""
    result = session.execute(delete(SignIn).where(SignIn.user_id == user.id))
    return int(getattr(result, "rowcount", 0) or 0)


def active(session: Session, user: User) -> list[SignIn]:
    """The user's live sign-ins, the most recently seen first."""
    return list(
        session.scalars(
            select(SignIn)
            .where(SignIn.user_id == user.id, SignIn.expires_at > utcnow())
            .order_by(SignIn.last_seen_at.desc(), SignIn.id.desc())
        )
    )


def delete_expired(session: Session, now: datetime) -> int:
    """Delete every sign-in past its expiry (housekeeping); returns how many."""
    result = session.execute(delete(SignIn).where(SignIn.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)


_BROWSERS = [
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
]
_SYSTEMS = [
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
]


def describe_agent(user_agent: str) -> str:
    """A short name for a browser ("Firefox on Linux") to tell sign-ins apart; the whole
    User-Agent is not kept, being more than the account page needs to show."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or re.sub(r"[^\x20-\x7e]", "", user_agent)[:60] or "Unknown browser"
