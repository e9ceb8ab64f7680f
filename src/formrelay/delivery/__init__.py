"""Delivery channels behind one small interface.

A backend is built from Settings, sends one message per `send` call and reports failure by
raising DeliveryFailed, which says whether another attempt could succeed. Backends may hold
a connection open between sends; `close` releases it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Protocol

from ..settings import Settings


class DeliveryFailed(Exception):
    """A send did not succeed; `retryable` says whether the outbox should try again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None = None


class MailBackend(Protocol):
    def send(self, message: Message) -> SendResult: ...

    def close(self) -> None: ...


def _console(settings: Settings) -> MailBackend:
    from .console import ConsoleBackend

    return ConsoleBackend()


def _smtp(settings: Settings) -> MailBackend:
    from .smtp import SMTPBackend

    return SMTPBackend.from_settings(settings)


def _ses(settings: Settings) -> MailBackend:
    from .ses import SESBackend

    return SESBackend.from_settings(settings)


MAIL_BACKENDS: dict[str, Callable[[Settings], MailBackend]] = {
    "console": _console,
    "smtp": _smtp,
    "ses": _ses,
}


def mail_backend(settings: Settings) -> MailBackend:
    """The mail backend MAIL_BACKEND names."""
    return MAIL_BACKENDS[settings.mail_backend](settings)
