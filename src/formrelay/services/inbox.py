"""Reading what forms received: submissions, newest first, with their deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from ..models import Form, Submission, User
from .permissions import owned_forms


@dataclass(frozen=True)
class SubmissionFilter:
    """What a submissions page, its export and `formrelay export` show: one form or all the
    actor's forms, the inbox or the spam folder, an optional search and date range."""

    form: Form | None = None
    spam: bool = False
    q: str = ""  # full-text search over field values (services.search)
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def filtered(actor: User | None, f: SubmissionFilter) -> Select[Submission]:
    """The submissions `f` selects that `actor` may see (None: the CLI, which sees all),
    newest first (created_at, id descending: the keyset order)."""
    query = select(Submission).where(Submission.is_spam.is_(f.spam))
    if f.form is not None:
        query = query.where(Submission.form_id == f.form.id)
    elif actor is not None and not actor.is_admin:
        query = query.where(Submission.form_id.in_(owned_forms(actor).with_only_columns(Form.id)))
    if f.since is not None:
        query = query.where(Submission.created_at >= f.since)
    if f.until is not None:
        query = query.where(Submission.created_at < f.until)
    return query.order_by(Submission.created_at.desc(), Submission.id.desc())


@dataclass(frozen=True)
class SubmissionCounts:
    inbox: int
    spam: int


def list_submissions(
    session: Session, *, form: Form | None = None, spam: bool = False, limit: int = 20
) -> Sequence[Submission]:
    """The latest `limit` submissions, of `form` or of every form, newest first: the inbox,
    or with `spam` the submissions marked as spam."""
    query = (
        select(Submission)
        .options(selectinload(Submission.deliveries), selectinload(Submission.form))
        .where(Submission.is_spam.is_(spam))
        .order_by(Submission.created_at.desc(), Submission.id.desc())
        .limit(limit)
    )
    if form is not None:
        query = query.where(Submission.form_id == form.id)
    return session.scalars(query).all()


def count_submissions(session: Session, form: Form) -> SubmissionCounts:
    """How many submissions `form` has kept, in the inbox and as spam."""
    rows = session.execute(
        select(Submission.is_spam, func.count())
        .where(Submission.form_id == form.id)
        .group_by(Submission.is_spam)
    ).all()
    counts = {bool(is_spam): n for is_spam, n in rows}
    return SubmissionCounts(inbox=counts.get(False, 0), spam=counts.get(True, 0))


def submission_record(submission: Submission) -> dict[str, Any]:
    """A submission as plain data (JSON-ready): what exports and scripts read."""
    return {
        "id": submission.id,
        "form": submission.form.key,
        "created_at": submission.created_at.isoformat(),
        "fields": [list(pair) for pair in submission.fields],
        "reply_to": submission.reply_to,
        "subject": submission.subject,
        "spam": submission.is_spam,
        "spam_reason": submission.spam_reason,
        "deliveries": [
            {
                "channel": d.channel,
                "target": d.target,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "sent_at": d.sent_at.isoformat() if d.sent_at else None,
            }
            for d in submission.deliveries
        ],
    }
