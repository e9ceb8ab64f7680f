"""Creating and listing forms and their recipients."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ..models import Form, Recipient, User, utcnow
from .addresses import normalize_email
from .errors import InvalidInput, SubmissionRejected
from .submissions import clean_subject
from .urls import http_url


def create_form(
    session: Session,
    owner: User,
    *,
    name: str,
    recipients: Sequence[str],
    redirect_url: str | None = None,
    subject: str | None = None,
    verified: bool = False,
) -> Form:
    """Add a form. Recipients given by an operator (the CLI) may be marked verified at once.

    Raises InvalidInput for a blank name, a bad address or a redirect that is not http(s).
    """
    name = " ".join(name.split())
    if not name:
        raise InvalidInput("A form needs a name.")
    if redirect_url and not http_url(redirect_url):
        raise InvalidInput(f"The redirect {redirect_url!r} must be an http(s) URL.")
    form = Form(
        name=name[:200],
        owner=owner,
        redirect_url=redirect_url or None,
        subject=clean_subject(subject or ""),
    )
    seen: set[str] = set()
    for raw in recipients:
        try:
            address = normalize_email(raw, "recipient")
        except SubmissionRejected:
            raise InvalidInput(f"{raw!r} is not a valid e-mail address.") from None
        if address.lower() in seen:
            continue
        seen.add(address.lower())
        form.recipients.append(
            Recipient(email=address, verified=verified, verified_at=utcnow() if verified else None)
        )
    session.add(form)
    session.flush()
    return form


def list_forms(session: Session) -> Sequence[Form]:
    return session.scalars(
        select(Form).options(selectinload(Form.recipients)).order_by(Form.id)
    ).all()
