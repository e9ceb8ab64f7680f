"""Factories: build domain objects with sensible defaults and keyword overrides."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from formrelay.models import Form, User
from formrelay.services import accounts, forms


def make_user(session: Session, email: str = "owner@example.com", *, admin: bool = True) -> User:
    user = accounts.find_user(session, email)
    return user or accounts.create_user(session, email, admin=admin)


def make_form(
    session: Session,
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
