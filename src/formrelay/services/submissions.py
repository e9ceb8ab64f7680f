"""Accepting a submission: validate the special fields, store it and its deliveries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Delivery, Form, Submission
from .errors import FieldError, FormDisabled, FormNotFound, SubmissionRejected

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
class Accepted:
    submission: Submission
    # Where the submitter goes next: _next or the form's redirect; None means our thanks page.
    next_url: str | None


def find_form(session: Session, key: str) -> Form:
    """The enabled form with this public key.

    Raises FormNotFound or FormDisabled.
    """
    form = session.scalar(select(Form).where(Form.key == key))
    if form is None:
        raise FormNotFound()
    if not form.enabled:
        raise FormDisabled()
    return form


def accept_submission(
    session: Session, form: Form, *, fields: list[tuple[str, str]], meta: SubmissionMeta
) -> Accepted:
    """Store a submission and one pending delivery per verified recipient (not committed).

    A filled honeypot is stored as spam with no deliveries and answered like any success,
    so that a bot learns nothing. Raises SubmissionRejected naming every invalid field.
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
        submission = _store(session, form, data, meta, spam_reason="honeypot field was filled")
        return Accepted(submission, next_url or form.redirect_url)

    if not any(value.strip() for _, value in data):
        raise SubmissionRejected("EMPTY", "The form was submitted with no data.")

    errors: list[FieldError] = []
    reply_to = cc = next_url = None
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

    submission = _store(
        session,
        form,
        data,
        meta,
        reply_to=reply_to,
        subject=clean_subject(special.get(SUBJECT, "")),
        cc=cc or [],
    )
    for recipient in form.recipients:
        if recipient.verified:
            submission.deliveries.append(Delivery(channel="email", target=recipient.email))
    return Accepted(submission, next_url or form.redirect_url)


def _store(
    session: Session,
    form: Form,
    data: list[tuple[str, str]],
    meta: SubmissionMeta,
    *,
    reply_to: str | None = None,
    subject: str | None = None,
    cc: list[str] | None = None,
    spam_reason: str | None = None,
) -> Submission:
    submission = Submission(
        form=form,
        fields=[[name, value] for name, value in data],
        reply_to=reply_to,
        subject=subject,
        cc=cc or [],
        remote_addr=_cap(meta.remote_addr, 64),
        user_agent=_cap(meta.user_agent, 512),
        referrer=_cap(meta.referrer, 2000),
        origin=_cap(meta.origin, 512),
        is_spam=spam_reason is not None,
        spam_reason=spam_reason,
    )
    session.add(submission)
    return submission


def clean_subject(raw: str) -> str | None:
    """One line, no control breaks, at most MAX_SUBJECT characters; None when blank."""
    subject = " ".join(_LINE_BREAKS.sub(" ", raw).split())
    return subject[:MAX_SUBJECT] or None


def normalize_email(value: str, field: str) -> str:
    """The normalized address; raises SubmissionRejected(TYPE_EMAIL) naming the field."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        raise SubmissionRejected(
            "TYPE_EMAIL", f"The {field} field must be a valid e-mail address.", field
        ) from None


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
    scheme = urlsplit(raw).scheme.lower()
    if scheme:
        if scheme not in ("http", "https") or not urlsplit(raw).netloc:
            raise _bad_next("must be an http(s) URL or a path")
        return raw
    base = meta.referrer or meta.origin
    if not base or urlsplit(base).scheme not in ("http", "https"):
        raise _bad_next("is a relative path, but the request names no page to resolve it against")
    return urljoin(base, raw)


def _bad_next(reason: str) -> SubmissionRejected:
    return SubmissionRejected("INVALID_NEXT", f"The {NEXT} field {reason}.", NEXT)


def _lenient_next_url(raw: str, meta: SubmissionMeta) -> str | None:
    """_next for a spam submission: an invalid one is ignored, never reported to the bot."""
    try:
        return _next_url(raw, meta)
    except SubmissionRejected:
        return None


def _cap(value: str | None, length: int) -> str | None:
    return value[:length] if value else None
