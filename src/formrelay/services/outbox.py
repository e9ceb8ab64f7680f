"""Storing submissions with their deliveries (the outbox), in the caller's transaction.

Group commit (formrelay.ingest) passes every submission that arrived together; Core inserts
of the whole batch keep the request path lean. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, and_, bindparam, insert, select
from sqlalchemy.orm import Session

from ..models import Attachment, Delivery, DeliveryStatus, Form, Recipient, Submission, utcnow
from . import search
from .attachments import attachment_rows
from .errors import DomainError, FormDisabled, FormNotFound
from .submissions import PreparedSubmission

# Core tables: the batch insert skips the ORM's unit of work on the request path.
_DELIVERIES = cast(Table, Delivery.__table__)
_FORMS, _RECIPIENTS = cast(Table, Form.__table__), cast(Table, Recipient.__table__)
# Built once: these run in every group commit, and building a statement costs more than
# running it.
# Each form with its verified recipients, in the order they were added: one row per
# recipient, or one with a NULL email for a form that has none.
_TARGETS = (
    select(
        _FORMS.c.id,
        _FORMS.c.key,
        _FORMS.c.enabled,
        _FORMS.c.redirect_url,
        _FORMS.c.store_only,
        _RECIPIENTS.c.email,
    )
    .outerjoin(_RECIPIENTS, and_(_RECIPIENTS.c.form_id == _FORMS.c.id, _RECIPIENTS.c.verified))
    .where(_FORMS.c.key.in_(bindparam("keys", expanding=True)))
    .order_by(_FORMS.c.id, _RECIPIENTS.c.id)
)
_INSERT_DELIVERIES = insert(_DELIVERIES)
_INSERT_ATTACHMENTS = insert(cast(Table, Attachment.__table__))
EMAIL = "email"  # the channel of notifications


@dataclass(frozen=True)
class StoredSubmission:
    id: int
    # Where the submitter goes next: _next or the form's redirect; None means our thanks page.
    next_url: str | None
    # Whether its files were recorded with it (not for spam: the caller removes them).
    kept_files: bool = False


@dataclass(frozen=True)
class FormTarget:
    """What storing a submission needs to know of its form."""

    id: int
    enabled: bool
    redirect_url: str | None
    recipients: tuple[str, ...]  # verified, in the order they were added; none if store-only


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
        row.key: FormTarget(
            row.id,
            row.enabled,
            row.redirect_url,
            () if row.store_only else tuple(recipients[row.key]),
        )
        for row in rows
    }


def store_submissions(
    session: Session,
    batch: Sequence[tuple[str, PreparedSubmission]],
    targets: Mapping[str, FormTarget] | None = None,
    *,
    search_index: bool = True,
) -> list[StoredSubmission | DomainError]:
    """Store prepared submissions for the forms with these keys (not committed).

    Each gets one pending delivery per verified recipient of its form (none when it is
    spam), in the session's transaction; the first carries the Cc addresses that are not
    recipients already. The result says, in order, what became of each:
    stored, or FormNotFound / FormDisabled. `targets` are the forms when the caller looked
    them up already (group commit does, before it takes SQLite's write lock). With
    `search_index` (FORMRELAY_SEARCH_INDEX, on unless measuring without it) the search index gets
    their entries in the same transaction: within the INSERT on PostgreSQL, one more
    executemany on SQLite.
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
    ids = search.insert_submissions(
        connection,
        [_submission_row(form.id, item) for _, item, form, _ in accepted],
        index=search_index,
    )
    deliveries: list[dict[str, object]] = []
    files: list[dict[str, object]] = []
    for (index, item, form, next_url), submission_id in zip(accepted, ids, strict=True):
        # Spam keeps no file (Formlander's bug #50 kept them on disk).
        kept = bool(item.files) and item.spam_reason is None
        results[index] = StoredSubmission(submission_id, next_url, kept_files=kept)
        if kept:
            files.extend(attachment_rows(submission_id, item.files))
        if item.spam_reason is None:
            cc = _cc_beyond_recipients(item.cc, form.recipients)
            for n, to in enumerate(form.recipients):
                deliveries.append(_delivery_row(submission_id, to, cc if n == 0 else []))
    if deliveries:
        connection.execute(_INSERT_DELIVERIES, deliveries)
    if files:
        connection.execute(_INSERT_ATTACHMENTS, files)
    return results


def deliver_submission(session: Session, submission: Submission) -> list[Delivery]:
    """Queue the notifications a submission did not get when it arrived (it was taken for
    spam): one per verified recipient of its form, unless the form is store-only or the
    submission has deliveries already. Returns the new rows (flushed, not committed)."""
    form = submission.form
    if form.store_only or submission.deliveries:
        return []
    recipients = [r.email for r in form.recipients if r.verified]
    cc = _cc_beyond_recipients(submission.cc, recipients)
    created = [
        Delivery(**_delivery_row(submission.id, to, cc if n == 0 else []))
        for n, to in enumerate(recipients)
    ]
    session.add_all(created)
    session.flush()
    return created


def queue_mail(
    session: Session, to: str, *, subject: str, text: str, html: str | None = None
) -> Delivery:
    """Queue one of the dashboard's own messages (a confirmation, a reset, an invitation)
    in the outbox, where the worker sends, retries and logs it like a notification."""
    row = _delivery_row(None, to, [])
    row["message"] = {"subject": subject, "text": text, **({"html": html} if html else {})}
    delivery = Delivery(**row)
    session.add(delivery)
    session.flush()
    return delivery


def _cc_beyond_recipients(cc: Sequence[str], recipients: Sequence[str]) -> list[str]:
    """The Cc addresses that are not recipients of the form already (ignoring case): an
    owner who copies themselves gets the message once."""
    own = {address.lower() for address in recipients}
    return [address for address in cc if address.lower() not in own]


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


def _delivery_row(submission_id: int | None, target: str, cc: list[str]) -> dict[str, object]:
    now = utcnow()
    return {
        "submission_id": submission_id,
        "channel": EMAIL,
        "target": target,
        "cc": cc,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _cap(value: str | None, length: int) -> str | None:
    return value[:length] if value else None
