"""A real SMTP server in the test process (aiosmtpd), recording what it receives."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.controller import Controller

from .servers import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class RecordingHandler:
    """Keeps every message; `refuse_with` answers DATA with that reply instead."""

    received: list[Received] = field(default_factory=list)
    refuse_with: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_with:
            return self.refuse_with
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 OK"


class MailServer:
    """An aiosmtpd Controller on a free port, with `handler` (a RecordingHandler by default);
    extra Controller kwargs pass through. Usable as a context manager."""

    def __init__(self, handler: RecordingHandler | None = None, **controller_kwargs: Any) -> None:
        self.handler = handler or RecordingHandler()
        self.port = free_port()
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, **controller_kwargs
        )

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> MailServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


SENDER = "formrelay@forms.test"


def point_app_at(app_config: dict[str, object], port: int, **settings: object) -> None:
    """Send the test app's mail to the SMTP server on `port` (use before `app`)."""
    app_config.update(
        mail_backend="smtp",
        mail_server="127.0.0.1",
        mail_port=port,
        mail_default_sender=SENDER,
        mail_timeout=5.0,
        **settings,
    )
