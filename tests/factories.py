"""Factories: build domain objects with sensible defaults and keyword overrides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.orm import Session, scoped_session

from formrelay.db import begin_write
from formrelay.models import Delivery, DeliveryStatus, Form, Submission, User, utcnow
from formrelay.services import accounts, field_names, forms, passwords, search

AnySession = Session | scoped_session[Session]


PASSWORD = "correct horse battery staple"


def make_user(
    session: AnySession,
    email: str = "owner@example.com",
    *,
    admin: bool = True,
    password: str | None = PASSWORD,
    confirmed: bool = True,
) -> User:
    """The user with this address: made (with a password and a confirmed address unless
    told otherwise) if there is none."""
    user = accounts.find_user(session, email)
    if user is not None:
        return user
    user = accounts.create_user(session, email, admin=admin)
    if password is not None:
        user.password_hash = passwords.hash_password(password)
    if confirmed:
        user.confirmed_at = utcnow()
    session.flush()
    return user


def make_form(
    session: AnySession,
    *,
    name: str = "Contact",
    recipients: Sequence[str] = ("owner@example.com",),
    verified: bool = True,
    enabled: bool = True,
    redirect_url: str | None = None,
    subject: str | None = None,
    owner: User | None = None,
    **spam_settings: object,
) -> Form:
    """A committed form (so that requests in other sessions see it). `spam_settings` are
    Form columns set as given (allow_cc=True, allowed_domains=[...], max_links=0...)."""
    _begin_write(session)
    form = forms.create_form(
        session,
        owner or make_user(session),
        name=name,
        recipients=recipients,
        redirect_url=redirect_url,
        subject=subject,
        verified=verified,
    )
    form.enabled = enabled
    for name, value in spam_settings.items():
        if not hasattr(Form, name):
            raise TypeError(f"Form has no column {name}")
        setattr(form, name, value)
    session.commit()
    return form


def make_submission(
    session: AnySession,
    form: Form | None = None,
    *,
    fields: Mapping[str, str] | Sequence[tuple[str, str]] = (("message", "hello"),),
    spam: bool = False,
    spam_reason: str | None = None,
    reply_to: str | None = None,
    subject: str | None = None,
    cc: Sequence[str] = (),
    created_at: datetime | None = None,
    remote_addr: str | None = None,
    user_agent: str | None = None,
    referrer: str | None = None,
    origin: str | None = None,
) -> Submission:
    """A committed submission to `form` (a new make_form() by default), stored as it is given
    (nothing validated) and without deliveries: make_delivery() adds those. `fields` are the
    data fields in submitted order: a mapping, or (name, value) pairs to repeat a name."""
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    form = form or make_form(session)
    _begin_write(session)
    submission = Submission(
        form=form,
        fields=[[name, value] for name, value in pairs],
        is_spam=spam,
        spam_reason=spam_reason or ("honeypot field was filled" if spam else None),
        reply_to=reply_to,
        subject=subject,
        cc=list(cc),
        created_at=created_at or utcnow(),
        remote_addr=remote_addr,
        user_agent=user_agent,
        referrer=referrer,
        origin=origin,
    )
    session.add(submission)
    session.flush()
    # As ingest does, in the same transaction: the search index's entry.
    search.index_submissions(
        session.connection(), [(submission.id, search.search_text(submission.fields))]
    )
    field_names.record(session.connection(), [(submission.id, form.id, submission.fields)])
    session.commit()
    return submission


def make_delivery(
    session: AnySession,
    submission: Submission | None = None,
    *,
    status: str = DeliveryStatus.PENDING,
    target: str | None = None,
    cc: Sequence[str] = (),
    attempts: int = 0,
    next_attempt_at: datetime | None = None,
    leased_by: str | None = None,
    lease_expires_at: datetime | None = None,
    last_error: str | None = None,
    provider_message_id: str | None = None,
    sent_at: datetime | None = None,
) -> Delivery:
    """A committed e-mail delivery of `submission` (a new make_submission() by default) to
    `target` (the form's first recipient by default), due now unless `next_attempt_at` says
    otherwise."""
    submission = submission or make_submission(session)
    _begin_write(session)
    delivery = Delivery(
        submission=submission,
        form_id=submission.form_id,
        channel="email",
        target=target or submission.form.recipients[0].email,
        cc=list(cc),
        status=str(status),
        attempts=attempts,
        next_attempt_at=next_attempt_at or utcnow(),
        leased_by=leased_by,
        lease_expires_at=lease_expires_at,
        last_error=last_error,
        provider_message_id=provider_message_id,
        sent_at=sent_at,
    )
    session.add(delivery)
    session.commit()
    return delivery


def _begin_write(session: AnySession) -> None:
    # A writer from the start: on SQLite a transaction that has read cannot write once a
    # worker (its heartbeat, say) has written meanwhile (see db.begin_write).
    begin_write(session() if isinstance(session, scoped_session) else session)
