"""Storing submissions with their deliveries (the outbox), in the caller's transaction.

Group commit (formrelay.ingest) passes every submission that arrived together, with the
writer of its connection (services/outbox_sql.py: the driver's own statements keep the
request path lean). Nothing here commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryStatus, Form, Recipient, Submission, utcnow
from .attachments import attachment_rows
from .errors import DomainError, FormDisabled, FormNotFound
from .outbox_sql import DriverWriter
from .submissions import PreparedSubmission

EMAIL = "email"  # the channel of notifications


@dataclass(frozen=True)
class StoredSubmission:
    id: int
    # Where the submitter goes next: _next or the form's redirect; None means our thanks page.
    next_url: str | None


@dataclass(frozen=True)
class FormTarget:
    """What storing a submission needs to know of its form."""

    id: int
    enabled: bool
    redirect_url: str | None
    recipients: tuple[str, ...]  # verified, in the order they were added; none if store-only
    name: str = ""
    owner_email: str = ""
    notify_limit: int | None = None  # None: the default ceiling


class Counters(Protocol):
    def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...


@dataclass(frozen=True)
class NotificationCeilings:
    """At most so many notifications an hour per form (its own ceiling, else `per_form`)
    and over all forms (`overall`); 0 means none. Past a ceiling a submission is stored,
    its notifications held (dead, saying why: "retry" in the dashboard sends them), and
    the form's owner gets one notice per form and hour."""

    counters: Counters
    per_form: int = 0
    overall: int = 0

    def budgets(
        self, wanted: Mapping[int, tuple[FormTarget, int]], hour: int
    ) -> dict[int, tuple[int, str]]:
        """For each form id: (how many of the `wanted` notifications this hour's ceilings
        leave room for, why the rest are held). One counter step per form and batch."""
        out: dict[int, tuple[int, str]] = {}
        for form_id, (form, n) in wanted.items():
            limit = self.per_form if form.notify_limit is None else form.notify_limit
            if limit:
                before = self.counters.incr(f"notify:{form_id}:{hour}", HOUR + 60, n) - n
                room = max(0, min(n, limit - before))
                out[form_id] = (room, f"the form's ceiling of {limit} notifications an hour")
            else:
                out[form_id] = (n, "")
        if self.overall:
            total = sum(room for room, _ in out.values())
            left = self.overall - (
                self.counters.incr(f"notify:all:{hour}", HOUR + 60, total) - total
            )
            why = f"formrelay's ceiling of {self.overall} notifications an hour over all forms"
            for form_id, (room, reason) in out.items():
                take = max(0, min(room, left))
                left -= take
                out[form_id] = (take, reason if take == room else why)
        return out

    def first_notice(self, form: FormTarget, hour: int) -> bool:
        """Whether the owner is still to be told, this hour, that the form is over."""
        return self.counters.incr(f"notify-notice:{form.id}:{hour}", HOUR + 60) == 1


HOUR = 3600
# How long group commit trusts a form's cached target (recipients, redirect, store-only)
# when another process may have changed it; this process's own changes apply at once, and
# a form disabled or deleted anywhere refuses the next submission (the INSERT checks).
TARGET_SECONDS = 5.0
# Forms this process changed (their ORM rows flushed): id -> when (time.monotonic()).
_changed: dict[int, float] = {}
# In a Session's info while its transaction has changed forms (formrelay.ingest tells the
# machine's committer once it commits).
FORMS_CHANGED = "formrelay_forms_changed"


@event.listens_for(Session, "after_flush")
def _note_changed_forms(session: Session, context: object) -> None:
    # Only what the flush itself knows: reading an attribute could load it, a query in
    # the middle of a flush.
    now = time.monotonic()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Form):
            identity = inspect(obj).identity
            if identity:
                _changed[int(identity[0])] = now
                session.info[FORMS_CHANGED] = True
        elif isinstance(obj, Recipient):
            form_id = inspect(obj).dict.get("form_id")
            if form_id is not None:
                _changed[int(form_id)] = now
                session.info[FORMS_CHANGED] = True
    if len(_changed) > 10_000:
        _changed.clear()


def changed_forms_since(when: float) -> list[int]:
    """The ids of the forms this process changed at or after `when` (time.monotonic())."""
    return [form_id for form_id, at in _changed.items() if at >= when]


def note_changed_forms(form_ids: Iterable[int]) -> None:
    """Mark forms changed elsewhere (the machine's committer hears of them from the web
    processes) as changed now: their cached targets are read again."""
    now = time.monotonic()
    for form_id in form_ids:
        _changed[form_id] = now


class TargetCache:
    """Enabled forms' targets in this process, for TARGET_SECONDS, so that group commit
    reads no form for most batches: a query there made each batch wait about 1.8 ms for
    the GIL, woken request threads holding it (measured). Forms not found or disabled are
    not kept: each batch asks again, so an enabled form takes submissions at once."""

    def __init__(self, seconds: float = TARGET_SECONDS) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[float, FormTarget]] = {}

    def targets(self, writer: DriverWriter, keys: Iterable[str]) -> dict[str, FormTarget]:
        now = time.monotonic()
        found: dict[str, FormTarget] = {}
        missing: list[str] = []
        for key in keys:
            entry = self._entries.get(key)
            if (
                entry is not None
                and now - entry[0] < self.seconds
                and _changed.get(entry[1].id, -1.0) < entry[0]
            ):
                found[key] = entry[1]
            else:
                missing.append(key)
        if missing:
            loaded = load_targets(writer, missing)
            if len(self._entries) > 10_000:
                self._entries.clear()
            for key, target in loaded.items():
                if target.enabled:
                    self._entries[key] = (now, target)
            found.update(loaded)
        return found

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)


def load_targets(writer: DriverWriter, keys: Iterable[str]) -> dict[str, FormTarget]:
    """The forms with these keys (those that exist), with their verified recipients."""
    rows = writer.form_rows(set(keys))
    recipients: dict[str, list[str]] = {}
    for row in rows:
        emails = recipients.setdefault(row[1], [])
        if row[8] is not None:
            emails.append(row[8])
    targets: dict[str, FormTarget] = {}
    for form_id, key, enabled, redirect_url, store_only, name, notify_limit, owner, _ in rows:
        targets[key] = FormTarget(
            form_id,
            bool(enabled),
            redirect_url,
            () if store_only else tuple(recipients[key]),
            name,
            owner,
            notify_limit,
        )
    return targets


def store_submissions(
    writer: DriverWriter,
    batch: Sequence[tuple[str, PreparedSubmission]],
    targets: Mapping[str, FormTarget] | None = None,
    *,
    search_index: bool = True,
    ceilings: NotificationCeilings | None = None,
    begin: Callable[[], None] | None = None,
) -> list[StoredSubmission | DomainError]:
    """Store prepared submissions for the forms with these keys (not committed), on the
    writer's connection: in its open transaction, or in the one `begin` starts once the
    rows are ready.

    Each gets one pending delivery per verified recipient of its form (none when it is
    spam), in the session's transaction; the first carries the Cc addresses that are not
    recipients already. The result says, in order, what became of each:
    stored, or FormNotFound / FormDisabled. `targets` are the forms when the caller looked
    them up already (group commit keeps them in a cache): the INSERT stores a submission
    only while its form exists and is enabled, whatever they say. With
    `search_index` (FORMRELAY_SEARCH_INDEX, on unless measuring without it) the search index gets
    their entries in the same transaction: within the INSERT on PostgreSQL, one more
    executemany on SQLite.
    """
    forms = targets if targets is not None else load_targets(writer, (k for k, _ in batch))
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

    # All that needs no database first: under SQLite's write lock (`begin` takes it),
    # every other writer on the machine waits.
    prepared = writer.prepare_submissions(
        [_submission_row(form.id, item) for _, item, form, _ in accepted], index=search_index
    )
    hour = int(time.time() // HOUR)
    budgets: dict[int, tuple[int, str]] = {}
    if ceilings is not None:
        wanted: dict[int, tuple[FormTarget, int]] = {}
        for _, item, form, _ in accepted:
            if item.spam_reason is None and form.recipients:
                n = wanted.get(form.id, (form, 0))[1]
                wanted[form.id] = (form, n + len(form.recipients))
        budgets = ceilings.budgets(wanted, hour)
    # Each accepted submission's deliveries, their values with its id to come first.
    deliveries: list[list[tuple[object, ...]]] = []
    notices: list[dict[str, object]] = []  # to owners whose forms are over a ceiling
    for _, item, form, _ in accepted:
        rows: list[dict[str, object]] = []
        if item.spam_reason is None and form.recipients:
            cc = _cc_beyond_recipients(item.cc, form.recipients)
            rows = [
                _delivery_row(None, form.id, to, cc if n == 0 else [])
                for n, to in enumerate(form.recipients)
            ]
            held: str | None = None
            if form.id in budgets:
                room, why = budgets[form.id]
                if room < len(rows):
                    held = why
                budgets[form.id] = (max(0, room - len(rows)), why)
            if held is not None:
                assert ceilings is not None
                for row in rows:
                    row.update(
                        status=DeliveryStatus.DEAD.value,
                        next_attempt_at=None,
                        last_error=f"Held, not sent: over {held}. Retry to send it.",
                    )
                if ceilings.first_notice(form, hour):
                    notices.append(_over_the_limit_notice(form, held, hour))
        deliveries.append(writer.delivery_values(rows))
    notice_values = writer.delivery_values(notices)

    if begin is not None:
        begin()
    inserted = writer.insert_prepared(prepared)
    if None in inserted:  # a form disabled or deleted since the caller looked: which?
        existing = {row[0] for row in writer.form_rows({key for key, _ in batch})}
        for (index, _, form, _), i in zip(accepted, inserted, strict=True):
            if i is None:
                results[index] = FormDisabled() if form.id in existing else FormNotFound()
    values: list[tuple[object, ...]] = []
    files: list[dict[str, object]] = []
    for (index, item, _, next_url), submission_id, its in zip(
        accepted, inserted, deliveries, strict=True
    ):
        if submission_id is None:
            continue
        results[index] = StoredSubmission(submission_id, next_url)
        # Spam keeps its files, recorded like any (Formlander's bug #50 left them on disk
        # unrecorded): "Not spam" sends them, and deleting the spam removes them.
        files.extend(attachment_rows(submission_id, item.files))
        values.extend((submission_id, *v[1:]) for v in its)
    writer.insert_delivery_values(values + notice_values)
    writer.insert_attachments(files)
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
        Delivery(**_delivery_row(submission.id, submission.form_id, to, cc if n == 0 else []))
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
    row = _delivery_row(None, None, to, [])
    row["message"] = {"subject": subject, "text": text, **({"html": html} if html else {})}
    delivery = Delivery(**row)
    session.add(delivery)
    session.flush()
    return delivery


def _over_the_limit_notice(form: FormTarget, held: str, hour: int) -> dict[str, object]:
    """The one message an owner gets in an hour when a form's notifications are held."""
    since = datetime.fromtimestamp(hour * HOUR, UTC).strftime("%Y-%m-%d %H:%M UTC")
    row = _delivery_row(None, None, form.owner_email, [])
    row["message"] = {
        "subject": f"Notifications of {form.name} are held: over {held}",
        "text": (
            f'Your form "{form.name}" has reached {held} (the hour from {since}).\n\n'
            "Its submissions are still stored, nothing is lost: their notifications are\n"
            'held instead of sent, each marked "Held, not sent" in the dashboard, where\n'
            '"Retry" sends it. This is the only such message for this form this hour.\n\n'
            "If the traffic is real, raise the form's ceiling in its settings; if it is\n"
            "not, the form's spam settings (allowed domains, CAPTCHA, rate limit) stop it.\n"
        ),
    }
    return row


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


def _delivery_row(
    submission_id: int | None, form_id: int | None, target: str, cc: list[str]
) -> dict[str, object]:
    now = utcnow()
    return {
        "submission_id": submission_id,
        "form_id": form_id,
        "channel": EMAIL,
        "target": target,
        "cc": cc,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        # Every row of one executemany has the same keys: held ones carry their reason.
        "last_error": None,
    }


def _cap(value: str | None, length: int) -> str | None:
    return value[:length] if value else None
