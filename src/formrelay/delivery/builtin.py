"""formrelay's own delivery channel and backends, registered as an extension would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import Backend, register_backend, register_channel
from .message import build_email

if TYPE_CHECKING:
    from ..settings import Settings

EMAIL = "email"


def _console(settings: Settings) -> Backend:
    from .console import ConsoleBackend

    return ConsoleBackend()


def _smtp(settings: Settings) -> Backend:
    from .smtp import SMTPBackend

    return SMTPBackend.from_settings(settings)


def _ses(settings: Settings) -> Backend:
    from .ses import SESBackend  # boto3 is loaded only where SES is used

    return SESBackend.from_settings(settings)


register_channel(EMAIL, compose=build_email, chosen=lambda s: s.mail_backend)
register_backend(EMAIL, "console", _console)
register_backend(EMAIL, "smtp", _smtp)
register_backend(EMAIL, "ses", _ses)
