"""Factories: build domain objects with sensible defaults and keyword overrides."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, scoped_session

from formrelay.db import begin_write
from formrelay.models import Form, User
from formrelay.services import accounts, forms


def make_user(
    session: Session | scoped_session[Session],
    email: str = "owner@example.com",
    *,
    admin: bool = True,
) -> User:
    user = accounts.find_user(session, email)
    return user or accounts.create_user(session, email, admin=admin)


def make_form(
    session: Session | scoped_session[Session],
    *,
    name: str = "Contact",
    recipients: Sequence[str] = ("owner@example.com",),
    verified: bool = True,
    enabled: bool = True,
    redirect_url: str | None = None,
    subject: str | None = None,
    owner: User | None = None,
) -> Form:
    """A committed form (so that requests in other sessions see it)."""
    # A writer from the start: on SQLite a transaction that has read cannot write once a
    # worker (its heartbeat, say) has written meanwhile (see db.begin_write).
    begin_write(session() if isinstance(session, scoped_session) else session)
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
    session.commit()
    return form
