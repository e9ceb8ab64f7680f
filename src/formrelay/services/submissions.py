"""Accepting a submission: validate the special fields, store it with its deliveries."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urljoin, urlsplit

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Table, and_, bindparam, insert, select
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryStatus, Form, Recipient, Submission, utcnow
from .errors import DomainError, FieldError, FormDisabled, FormNotFound, SubmissionRejected
from .urls import http_url

# Fields that steer formrelay and are never shown as data (Formspree's names).
REPLY_TO, SUBJECT, NEXT, CC, HONEYPOT = "_replyto", "_subject", "_next", "_cc", "_gotcha"
SPECIAL_FIELDS = frozenset({REPLY_TO, SUBJECT, NEXT, CC, HONEYPOT})
MAX_SUBJECT = 200
MAX_CC = 5
# Core tables: the batch insert skips the ORM's unit of work on the request path.
_SUBMISSIONS = cast(Table, Submission.__table__)
_DELIVERIES = cast(Table, Delivery.__table__)
_FORMS, _RECIPIENTS = cast(Table, Form.__table__), cast(Table, Recipient.__table__)
# Built once: these run in every group commit, and building a statement costs more than
# running it.
# Each form with its verified recipients, in the order they were added: one row per
# recipient, or one with a NULL email for a form that has none.
_TARGETS = (
    select(_FORMS.c.id, _FORMS.c.key, _FORMS.c.enabled, _FORMS.c.redirect_url, _RECIPIENTS.c.email)
    .outerjoin(_RECIPIENTS, and_(_RECIPIENTS.c.form_id == _FORMS.c.id, _RECIPIENTS.c.verified))
    .where(_FORMS.c.key.in_(bindparam("keys", expanding=True)))
    .order_by(_FORMS.c.id, _RECIPIENTS.c.id)
)
_INSERT_SUBMISSIONS = insert(_SUBMISSIONS).returning(
    _SUBMISSIONS.c.id, sort_by_parameter_order=True
)
_INSERT_DELIVERIES = insert(_DELIVERIES)
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


@dataclass(frozen=True)
class StoredSubmission:
    id: int
    # Where the submitter goes next: _next or the form's redirect; None means our thanks page.
    next_url: str | None


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


@dataclass(frozen=True)
class FormTarget:
    """What storing a submission needs to know of its form."""

    id: int
    enabled: bool
    redirect_url: str | None
    recipients: tuple[str, ...]  # verified, in the order they were added


def load_targets(session: Session, keys: Iterable[str]) -> dict[str, FormTarget]:
    """The forms with these keys (those that exist), with their verified recipients."""
    # Core statements on the session's connection: the ORM's execute path costs more than
    # the statements themselves, which run in every group commit.
    connection = session.connection()
    rows = connection.execute(_TARGETS, {"keys": list(set(keys))}).all()
    recipients: dict[str, list[str]] = {}
    for row in rows:
        emails = recipients.setdefault(row.key, [])
        if row.email is not None:
            emails.append(row.email)
    return {
        row.key: FormTarget(row.id, row.enabled, row.redirect_url, tuple(recipients[row.key]))
        for row in rows
    }


def store_submissions(
    session: Session,
    batch: Sequence[tuple[str, PreparedSubmission]],
    targets: Mapping[str, FormTarget] | None = None,
) -> list[StoredSubmission | DomainError]:
    """Store prepared submissions for the forms with these keys (not committed).

    Each gets one pending delivery per verified recipient of its form (none when it is
    spam), in the session's transaction. The result says, in order, what became of each:
    stored, or FormNotFound / FormDisabled. Core inserts of the whole batch keep the request
    path lean; group commit (formrelay.ingest) passes all the submissions that arrived
    together, with their forms looked up before it took the write lock.
    """
    forms = targets if targets is not None else load_targets(session, (k for k, _ in batch))
    results: list[StoredSubmission | DomainError] = []
    # (index in results, item, its form, where the submitter goes next)
    accepted: list[tuple[int, PreparedSubmission, FormTarget, str | None]] = []
    for key, item in batch:
        form = forms.get(key)
        if form is None:
            results.append(FormNotFound())
        elif not form.enabled:
            results.append(FormDisabled())
        else:
            accepted.append((len(results), item, form, item.next_url or form.redirect_url))
            results.append(FormNotFound())  # placeholder, replaced once stored
    if not accepted:
        return results

    connection = session.connection()
    ids = connection.scalars(
        _INSERT_SUBMISSIONS, [_submission_row(form.id, item) for _, item, form, _ in accepted]
    ).all()
    deliveries: list[dict[str, object]] = []
    for (index, item, form, next_url), submission_id in zip(accepted, ids, strict=True):
        results[index] = StoredSubmission(submission_id, next_url)
        if item.spam_reason is None:
            for n, to in enumerate(form.recipients):
                cc = list(item.cc) if n == 0 else []
                deliveries.append(_delivery_row(submission_id, to, cc))
    if deliveries:
        connection.execute(_INSERT_DELIVERIES, deliveries)
    return results


def accept_submission(
    session: Session, key: str, *, fields: list[tuple[str, str]], meta: SubmissionMeta
) -> StoredSubmission:
    """Validate and store one submission (not committed).

    Raises SubmissionRejected, FormNotFound or FormDisabled.
    """
    [result] = store_submissions(session, [(key, prepare_submission(fields, meta))])
    if isinstance(result, DomainError):
        raise result
    return result


def _submission_row(form_id: int, item: PreparedSubmission) -> dict[str, object]:
    meta = item.meta
    return {
        "form_id": form_id,
        "created_at": utcnow(),
        "fields": [[name, value] for name, value in item.fields],
        "reply_to": item.reply_to,
        "subject": item.subject,
        "cc": list(item.cc),
        "remote_addr": _cap(meta.remote_addr, 64),
        "user_agent": _cap(meta.user_agent, 512),
        "referrer": _cap(meta.referrer, 2000),
        "origin": _cap(meta.origin, 512),
        "is_spam": item.spam_reason is not None,
        "spam_reason": item.spam_reason,
    }


def _delivery_row(submission_id: int, target: str, cc: list[str]) -> dict[str, object]:
    now = utcnow()
    return {
        "submission_id": submission_id,
        "channel": "email",
        "target": target,
        "cc": cc,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


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


def _cap(value: str | None, length: int) -> str | None:
    return value[:length] if value else None
