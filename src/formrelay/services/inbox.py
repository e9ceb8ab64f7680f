"""Reading what forms received: submissions, newest first, with their deliveries."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, Select, delete, func, literal, select, tuple_, type_coerce
from sqlalchemy.orm import Session, selectinload

from ..models import (
    MAX_ID,
    Attachment,
    Delivery,
    DeliveryStatus,
    Form,
    Submission,
    User,
    utcnow,
)
from . import attachments, search
from .errors import Conflict, InvalidInput
from .outbox import deliver_submission
from .permissions import load_submission, owned_forms

# The delivery states a list can be narrowed to (the forms list links to them).
DELIVERY_STATES = (DeliveryStatus.FAILED.value, DeliveryStatus.DEAD.value)


@dataclass(frozen=True)
class SubmissionFilter:
    """What a submissions page, its export and `formrelay export` show: one form or all the
    actor's forms, the inbox or the spam folder, an optional search and date range."""

    form: Form | None = None
    spam: bool = False
    q: str = ""  # full-text search over field values (services.search)
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    # Only submissions with a delivery in this state (one of DELIVERY_STATES).
    delivery: str | None = None


def filtered(actor: User | None, f: SubmissionFilter) -> Select[Submission]:
    """The submissions `f` selects that `actor` may see (None: the CLI, which sees all),
    newest first (created_at, id descending: the keyset order)."""
    return _where(select(Submission), actor, f).order_by(
        Submission.created_at.desc(), Submission.id.desc()
    )


def _where(
    query: Select[Any],
    actor: User | None,
    f: SubmissionFilter,
    match: search.Narrowing | None = None,
) -> Select[Any]:
    """`query` narrowed to what `f` selects for `actor`; `match` is the search as the
    caller planned it already (search.narrowed)."""
    by_ids = match is not None and match.by_ids
    if by_ids:
        # "+ 0" keeps SQLite off the lists' indexes (folder and time, form, folder and
        # time) when the matches' ids are listed: their primary keys are the short way.
        query = query.where(type_coerce(Submission.is_spam, Integer) + 0 == int(f.spam))
    else:
        query = query.where(Submission.is_spam.is_(f.spam))
    if f.form is not None:
        form_id = Submission.form_id + 0 if by_ids else Submission.form_id
        query = query.where(form_id == f.form.id)
    elif actor is not None and not actor.is_admin:
        query = query.where(Submission.form_id.in_(owned_forms(actor).with_only_columns(Form.id)))
    if f.since is not None:
        query = query.where(Submission.created_at >= f.since)
    if f.until is not None:
        query = query.where(Submission.created_at < f.until)
    if f.delivery is not None:
        if f.delivery not in DELIVERY_STATES:
            raise InvalidInput(f"delivery must be one of {', '.join(DELIVERY_STATES)}.")
        query = query.where(
            Submission.id.in_(select(Delivery.submission_id).where(Delivery.status == f.delivery))
        )
    clause = match.clause if match is not None else search.matching(f.q)
    if clause is not None:
        query = query.where(clause)
    return query


# Keyset pagination ------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first, with the cursors of its neighbours (None at the
    ends)."""

    submissions: Sequence[Submission]
    newer: str | None  # cursor of the page before this one (more recent submissions)
    older: str | None  # cursor of the page after it


def encode_cursor(submission: Submission) -> str:
    """An opaque, URL-safe position in the (created_at, id) order."""
    raw = f"{submission.created_at.astimezone(UTC).isoformat()}|{submission.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a cursor names. Raises InvalidInput for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, ident = raw.partition("|")
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None:
            raise ValueError("no zone")
        number = int(ident)
        if not 1 <= number <= MAX_ID:
            raise ValueError("no such id")
        # In UTC now: a time that leaves Python's range there would fail in the query.
        return at.astimezone(UTC), number
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "This page link is not valid; start again from the first page."
        ) from None


def page(
    session: Session,
    actor: User | None,
    f: SubmissionFilter,
    *,
    older: str | None = None,
    newer: str | None = None,
    size: int = 50,
) -> Page:
    """The `size` submissions `f` selects right after cursor `older` (or right before
    `newer`; the first page without either), newest first. No OFFSET: each page is an
    index range from its cursor, as fast 500 pages deep as on the first."""
    key = tuple_(Submission.created_at, Submission.id)
    match = search.narrowed(session, f.q)
    query = _where(select(Submission), actor, f, match).options(selectinload(Submission.deliveries))
    if f.form is None:
        # One form's page has its form in the session already: each row's `form` is found
        # there without a query of its own.
        query = query.options(selectinload(Submission.form))
    if newer is not None:
        # Walk up from the cursor, then show those in the usual order.
        at, ident = decode_cursor(newer)
        rows = list(
            session.scalars(
                query.where(key > tuple_(_at(at), ident))
                .order_by(Submission.created_at.asc(), Submission.id.asc())
                .limit(size + 1)
            )
        )
        more = len(rows) > size
        rows = rows[:size][::-1]
        return Page(
            rows,
            newer=encode_cursor(rows[0]) if more and rows else None,
            older=encode_cursor(rows[-1]) if rows else None,
        )
    if older is not None:
        at, ident = decode_cursor(older)
        query = query.where(key < tuple_(_at(at), ident))
    rows = list(
        session.scalars(
            query.order_by(Submission.created_at.desc(), Submission.id.desc()).limit(size + 1)
        )
    )
    more = len(rows) > size
    rows = rows[:size]
    return Page(
        rows,
        newer=encode_cursor(rows[0]) if older is not None and rows else None,
        older=encode_cursor(rows[-1]) if more else None,
    )


def _at(moment: datetime) -> Any:
    # A bound value typed like the column, so that SQLite compares it in its stored form.
    return literal(moment, Submission.created_at.type)


# Changing submissions ---------------------------------------------------------------------


# The last_error of a delivery stopped because its submission was marked as spam.
STOPPED_AS_SPAM = "not sent: the submission was marked as spam"


def mark_spam(session: Session, submission: Submission, spam: bool) -> list[Delivery]:
    """Move a submission to the spam folder, or back to the inbox.

    Into spam, its deliveries not sent yet (pending, or failed and waiting to retry) stop:
    dead, saying why; one a worker is sending now finishes. Back in the inbox, those
    start again, or, if it never had any (it arrived as spam), it gets the notifications
    it skipped (services.outbox.deliver_submission). Returns the deliveries now due
    (flushed, not committed)."""
    submission.is_spam = spam
    if spam:
        submission.spam_reason = submission.spam_reason or "marked as spam by its owner"
        for delivery in submission.deliveries:
            if delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.FAILED):
                delivery.status = DeliveryStatus.DEAD
                delivery.last_error = STOPPED_AS_SPAM
                delivery.next_attempt_at = None
        session.flush()
        return []
    submission.spam_reason = None
    stopped = [
        d
        for d in submission.deliveries
        if d.status == DeliveryStatus.DEAD and d.last_error == STOPPED_AS_SPAM
    ]
    for delivery in stopped:
        delivery.status = DeliveryStatus.PENDING
        delivery.last_error = None
        delivery.next_attempt_at = utcnow()
    session.flush()
    return stopped or deliver_submission(session, submission)


def delete_submissions(session: Session, actor: User, ids: Sequence[int]) -> int:
    """Delete the submissions with these ids, with their deliveries and search entries; all
    of them or none: one the actor may not see raises NotFound. Returns how many."""
    wanted = sorted(set(ids))
    if not wanted:
        raise InvalidInput("Select at least one submission.")
    for ident in wanted:
        load_submission(session, actor, ident)
    return _delete(session, Submission.id.in_(wanted))


def empty_spam(session: Session, actor: User, form: Form | None) -> int:
    """Delete every spam submission of `form`, or of all the forms the actor may see.
    Returns how many."""
    spam = SubmissionFilter(form=form, spam=True)
    return _delete(session, Submission.id.in_(_where(select(Submission.id), actor, spam)))


def delete_older_than(session: Session, form_id: int, cutoff: datetime) -> int:
    """Delete a form's submissions (inbox and spam) made before `cutoff`, with their
    deliveries and files (retention). Returns how many."""
    return _delete(session, (Submission.form_id == form_id) & (Submission.created_at < _at(cutoff)))


def _delete(session: Session, which: Any) -> int:
    # Core deletes: the ORM would load every row first. Deliveries go explicitly, so that
    # it does not depend on the database enforcing ON DELETE CASCADE; the search entries
    # go with the rows (services.search).
    # Their files are removed from storage once this transaction commits.
    ids = list(session.scalars(select(Submission.id).where(which)))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        attachments.forget_after_commit(session, attachments.storage_keys(session, chunk))
        session.execute(delete(Attachment).where(Attachment.submission_id.in_(chunk)))
        session.execute(delete(Delivery).where(Delivery.submission_id.in_(chunk)))
        session.execute(delete(Submission).where(Submission.id.in_(chunk)))
    session.expire_all()
    return len(ids)


def retry_delivery(session: Session, delivery: Delivery) -> None:
    """Make a failed or dead delivery due now (pending; its attempts so far are kept, so the
    log stays true). Raises Conflict for a delivery in any other state."""
    if delivery.status not in DELIVERY_STATES:
        raise Conflict(f"This delivery is {delivery.status}; only failed or dead ones are retried.")
    delivery.status = DeliveryStatus.PENDING.value
    delivery.next_attempt_at = utcnow()
    delivery.lease_expires_at = None
    delivery.leased_by = None
    session.flush()


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


def submission_record(submission: Submission, *, base_url: str = "") -> dict[str, Any]:
    """A submission as plain data (JSON-ready): what exports and scripts read. Each file's
    link leads to the dashboard (`base_url` first), where its owner signs in."""
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
        "files": [
            {
                "field": a.field,
                "name": a.filename,
                "size": a.size,
                "content_type": a.content_type,
                "url": f"{base_url}/submissions/{submission.id}/files/{a.id}",
            }
            for a in submission.attachments
        ],
    }
