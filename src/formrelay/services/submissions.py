"""A submission's special fields: split them from the data and validate them.

`prepare_submission` touches no database: the web edge calls it before group commit
(formrelay.ingest) stores the result with services.outbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Form
from .addresses import normalize_email
from .errors import FieldError, FormDisabled, FormNotFound, SubmissionRejected
from .urls import http_url

# Fields that steer formrelay and are never shown as data (Formspree's names).
REPLY_TO, SUBJECT, NEXT, CC, HONEYPOT = "_replyto", "_subject", "_next", "_cc", "_gotcha"
SPECIAL_FIELDS = frozenset({REPLY_TO, SUBJECT, NEXT, CC, HONEYPOT})
MAX_SUBJECT = 200
MAX_CC = 5
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


@dataclass(frozen=True)
class SubmissionMeta:
    """What the request says about its sender, stored beside the fields."""

    remote_addr: str | None = None
    user_agent: str | None = None
    referrer: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class PreparedSubmission:
    """A validated submission, not yet bound to a form or stored."""

    fields: list[tuple[str, str]]  # data fields only, in submitted order
    meta: SubmissionMeta
    reply_to: str | None = None
    subject: str | None = None
    cc: tuple[str, ...] = ()
    next_url: str | None = None
    spam_reason: str | None = None


def check_form(session: Session, key: str) -> None:
    """Raise FormNotFound or FormDisabled unless the form with this key takes submissions."""
    enabled = session.scalar(select(Form.enabled).where(Form.key == key))
    if enabled is None:
        raise FormNotFound()
    if not enabled:
        raise FormDisabled()


def prepare_submission(fields: list[tuple[str, str]], meta: SubmissionMeta) -> PreparedSubmission:
    """Split the special fields from the data and validate them; touches no database.

    A filled honeypot gives a submission marked as spam whatever else it holds, so that it
    is answered like any success and a bot learns nothing. Raises SubmissionRejected naming
    every invalid field.
    """
    special: dict[str, str] = {}
    data: list[tuple[str, str]] = []
    for name, value in fields:
        if name in SPECIAL_FIELDS:
            special.setdefault(name, value)
        else:
            data.append((name, value))

    if special.get(HONEYPOT, "").strip():
        next_url = _lenient_next_url(special.get(NEXT, ""), meta)
        return PreparedSubmission(
            data, meta, next_url=next_url, spam_reason="honeypot field was filled"
        )

    if not any(value.strip() for _, value in data):
        raise SubmissionRejected("EMPTY", "The form was submitted with no data.")

    errors: list[FieldError] = []
    reply_to = next_url = None
    cc: list[str] = []
    try:
        reply_to = _reply_to(special, data)
    except SubmissionRejected as exc:
        errors.extend(exc.errors)
    try:
        cc = _cc_list(special.get(CC, ""))
    except SubmissionRejected as exc:
        errors.extend(exc.errors)
    try:
        next_url = _next_url(special.get(NEXT, ""), meta)
    except SubmissionRejected as exc:
        errors.extend(exc.errors)
    if errors:
        raise SubmissionRejected.from_errors(errors)
    return PreparedSubmission(
        data,
        meta,
        reply_to=reply_to,
        subject=clean_subject(special.get(SUBJECT, "")),
        cc=tuple(cc),
        next_url=next_url,
    )


def clean_subject(raw: str) -> str | None:
    """One line, no control breaks, at most MAX_SUBJECT characters; None when blank."""
    subject = " ".join(_LINE_BREAKS.sub(" ", raw).split())
    return subject[:MAX_SUBJECT] or None


def _reply_to(special: dict[str, str], data: list[tuple[str, str]]) -> str | None:
    """Reply-To from _replyto, else from a field named email; both validated when given."""
    explicit = special.get(REPLY_TO, "").strip()
    email = next((value.strip() for name, value in data if name.lower() == "email"), "")
    if email:
        email = normalize_email(email, "email")
    if explicit:
        return normalize_email(explicit, REPLY_TO)
    return email or None


def _cc_list(raw: str) -> list[str]:
    addresses = [part.strip() for part in raw.split(",") if part.strip()]
    if len(addresses) > MAX_CC:
        raise SubmissionRejected(
            "TOO_MANY_CC", f"The {CC} field lists more than {MAX_CC} addresses.", CC
        )
    return [normalize_email(address, CC) for address in addresses]


def _next_url(raw: str, meta: SubmissionMeta) -> str | None:
    """An absolute http(s) URL, or a path resolved against the referring page."""
    raw = raw.strip()
    if not raw:
        return None
    if any(ord(ch) < 32 for ch in raw):
        raise _bad_next("must not contain control characters")
    try:
        absolute = bool(urlsplit(raw).scheme)
    except ValueError:  # "http://[x"
        raise _bad_next("is not a valid URL") from None
    if absolute:
        if not http_url(raw):
            raise _bad_next("must be an http(s) URL or a path")
        return raw
    base = http_url(meta.referrer) or http_url(meta.origin)
    if not base:
        raise _bad_next("is a relative path, but the request names no page to resolve it against")
    url = http_url(urljoin(base, raw))
    if not url:
        raise _bad_next("is not a valid URL")
    return url


def _bad_next(reason: str) -> SubmissionRejected:
    return SubmissionRejected("INVALID_NEXT", f"The {NEXT} field {reason}.", NEXT)


def _lenient_next_url(raw: str, meta: SubmissionMeta) -> str | None:
    """_next for a spam submission: an invalid one is ignored, never reported to the bot."""
    try:
        return _next_url(raw, meta)
    except SubmissionRejected:
        return None
