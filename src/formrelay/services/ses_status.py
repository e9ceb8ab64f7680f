"""What `formrelay ses status` and the admin status page show about Amazon SES: the
account, the sending identity, the bounce and complaint rates formrelay recorded, and the
recipients a sandboxed account cannot reach."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..delivery.ses_account import (
    AccountStatus,
    IdentityStatus,
    RecipientChecker,
    SESError,
    account_status,
    identity_status,
)
from ..models import Form, Recipient, SESEvent
from ..settings import Settings
from .ses_events import Rate, rates


@dataclass(frozen=True)
class SandboxRecipient:
    address: str
    forms: Sequence[str]  # the names of the forms that send to it


@dataclass(frozen=True)
class SESOverview:
    rates: Sequence[Rate]
    configuration_set: str
    account: AccountStatus | None = None
    identity: IdentityStatus | None = None
    # What SES answered when it could not be asked (the account or the identity).
    errors: Sequence[str] = ()
    unverified: Sequence[SandboxRecipient] = field(default_factory=tuple)
    # When /hooks/ses last recorded an event (None: never: is the topic subscribed?).
    last_event_at: datetime | None = None

    def events_line(self) -> str:
        if self.last_event_at is None:
            return (
                "SES events: none recorded yet (bounces and complaints reach formrelay once "
                "/hooks/ses is subscribed to the configuration set's SNS topic; see docs/ses.md)"
            )
        return f"SES events: the last recorded {self.last_event_at:%Y-%m-%d %H:%M} UTC"

    @property
    def healthy(self) -> bool:
        """False when sending is paused, the identity unverified, a rate at risk, or SES
        could not be asked: what `formrelay ses status` exits 1 for."""
        return (
            not self.errors
            and self.account is not None
            and self.account.sending_enabled
            and (self.identity is None or self.identity.verified)
            and all(r.level != "at risk" for r in self.rates)
        )


def sender_domain(settings: Settings) -> str:
    """The domain of MAIL_DEFAULT_SENDER, the identity formrelay sends as."""
    return settings.mail_default_sender.rpartition("@")[2].rstrip(">").strip().lower()


def ses_overview(
    session: Session,
    settings: Settings,
    client: Any,
    *,
    now: datetime,
    identity: str | None = None,
    checker: RecipientChecker | None = None,
) -> SESOverview:
    """Ask SES (GetAccount, GetEmailIdentity) and the database. SES being unreachable or
    refusing is part of the answer (`errors`), not an exception."""
    errors: list[str] = []
    account = found = None
    try:
        account = account_status(client, settings.aws_region)
    except SESError as exc:
        errors.append(str(exc))
    if account is not None:  # else SES is away or refuses these keys: do not wait twice
        try:
            found = identity_status(client, identity or sender_domain(settings))
        except SESError as exc:
            errors.append(str(exc))
    unverified: list[SandboxRecipient] = []
    if account is not None and account.sandbox:
        try:
            unverified = sandbox_recipients(session, checker or RecipientChecker(client))
        except SESError as exc:
            errors.append(str(exc))
    return SESOverview(
        rates=rates(session, now=now),
        configuration_set=settings.ses_configuration_set,
        account=account,
        identity=found,
        errors=tuple(errors),
        unverified=tuple(unverified),
        last_event_at=session.scalar(select(func.max(SESEvent.created_at))),
    )


def sandbox_recipients(session: Session, checker: RecipientChecker) -> list[SandboxRecipient]:
    """The verified recipients of enabled forms that a sandboxed SES account cannot reach."""
    by_address: dict[str, list[str]] = {}
    for address, name in session.execute(
        select(Recipient.email, Form.name)
        .join(Form, Form.id == Recipient.form_id)
        .where(Recipient.verified.is_(True), Form.enabled.is_(True), Form.store_only.is_(False))
        .order_by(Recipient.email, Form.name)
    ):
        by_address.setdefault(address, []).append(name)
    missing = set(checker.unverified(list(by_address)))
    return [SandboxRecipient(a, tuple(f)) for a, f in by_address.items() if a in missing]
