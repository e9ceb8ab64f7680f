"""The one builder of e-mail messages, on email.message.EmailMessage."""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import cache
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from ..models import Delivery, Form, Submission
from ..settings import Settings


def nl2br(value: str) -> Markup:
    """Escape a value and keep its line breaks in HTML."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return Markup("<br>\n").join(escape(line) for line in lines)


@cache
def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("formrelay", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["nl2br"] = nl2br
    return env


def notification_subject(submission: Submission, form: Form, settings: Settings) -> str:
    if submission.subject:
        return submission.subject
    if form.subject:
        return form.subject
    prefix = settings.mail_subject_prefix.strip()
    return f"{prefix} New submission: {form.name}".strip()


def message_id(delivery: Delivery, settings: Settings) -> str:
    """Stable per delivery, so a retried send is recognisably the same message."""
    return f"<formrelay.{delivery.submission_id}.{delivery.id}@{_domain(settings)}>"


def _domain(settings: Settings) -> str:
    return urlsplit(settings.base_url).hostname or "formrelay.local"


def build_notification(delivery: Delivery, settings: Settings) -> EmailMessage:
    """The notification e-mail for one delivery of a submission."""
    submission = delivery.submission
    form = submission.form
    context = {
        "form": form,
        "submission": submission,
        "values": submission.values(),
        "submitted_at": submission.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    msg = EmailMessage()
    msg["Subject"] = notification_subject(submission, form, settings)
    msg["From"] = settings.mail_default_sender
    msg["To"] = delivery.target
    if delivery.cc:
        msg["Cc"] = ", ".join(delivery.cc)
    if submission.reply_to:
        msg["Reply-To"] = submission.reply_to
    msg["Date"] = format_datetime(submission.created_at)
    msg["Message-ID"] = message_id(delivery, settings)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders stay quiet
    env = templates()
    text = env.get_template("notifications/submission.txt").render(context)
    html = env.get_template("notifications/submission.html").render(context)
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg


def build_test_message(to: str, settings: Settings) -> EmailMessage:
    """A plain message proving the mail settings work."""
    msg = EmailMessage()
    msg["Subject"] = f"{settings.mail_subject_prefix} Test message".strip()
    msg["From"] = settings.mail_default_sender
    msg["To"] = str(Address(addr_spec=to))
    msg["Date"] = format_datetime(datetime.now(UTC))
    # Spam filters count a missing Message-ID against a message, and this one should arrive.
    msg["Message-ID"] = make_msgid("formrelay.test", domain=_domain(settings))
    msg.set_content(
        f"This is a test message from formrelay at {settings.base_url}, sent through the "
        f"{settings.mail_backend} backend.\n\nIf you can read it, mail delivery works.\n"
    )
    return msg


def header_addresses(message: EmailMessage, *headers: str) -> list[str]:
    """The bare addresses in the given address headers, in order."""
    out: list[str] = []
    for header in headers:
        for value in message.get_all(header) or []:
            out.extend(a.addr_spec for a in value.addresses)
    return out


def envelope_recipients(message: EmailMessage) -> list[str]:
    """Everyone the message goes to: To and Cc (never Bcc, which we do not set)."""
    return header_addresses(message, "To", "Cc")
