"""The notification builder never raises on stored data, whatever rules it was stored under.

Rows written before today's validation (or by hand, or by a later feature) can hold any
text: lone surrogates, control characters, addresses with non-ASCII local parts, names with
line breaks. Hypothesis builds notifications of such rows in memory (no database) and
flattens them to bytes, as the SMTP backend and SES do, and renders them for the console.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from formrelay.delivery.console import ConsoleBackend
from formrelay.delivery.message import build_notification, header_addresses
from formrelay.models import Delivery, Form, Submission
from formrelay.settings import Settings

ANY_TEXT = st.text(
    st.characters(codec=None, exclude_categories=()),  # surrogates and controls included
    max_size=40,
)
ADDRESSES = st.one_of(
    st.sampled_from(
        [
            "owner@example.com",
            "ann@bücher.de",
            "zoë@example.org",
            "Bob <bob@example.net>",
            '"Zoë, Café" <z@café.example>',
            "not an address",
            "a@b\r\nBcc: evil@example.com",
            "",
        ]
    ),
    ANY_TEXT,
)


def notification(
    fields: list[tuple[str, str]],
    form_name: str,
    subject: str | None,
    reply_to: str | None,
    referrer: str | None,
    target: str,
    cc: list[str],
) -> Delivery:
    form = Form(name=form_name, key="k", subject=None)
    submission = Submission(
        id=1,
        form=form,
        fields=[[name, value] for name, value in fields],
        subject=subject,
        reply_to=reply_to,
        referrer=referrer,
        cc=cc,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    return Delivery(id=2, submission_id=1, submission=submission, target=target, cc=cc)


@settings(max_examples=150, deadline=None, database=None)
@given(
    delivery=st.builds(
        notification,
        fields=st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=5),
        form_name=ANY_TEXT,
        subject=st.none() | ANY_TEXT,
        reply_to=st.none() | ADDRESSES,
        referrer=st.none() | ANY_TEXT,
        target=ADDRESSES,
        cc=st.lists(ADDRESSES, max_size=3),
    )
)
def test_any_stored_row_builds_into_a_message_with_one_line_headers(delivery: Delivery) -> None:
    config = Settings(base_url="https://forms.example.com", mail_default_sender="f@example.com")

    message = build_notification(delivery, config)
    wire = message.as_bytes()

    head = wire.split(b"\r\n\r\n", 1)[0]
    assert all(line[:1] in b" \t" or b": " in line for line in head.split(b"\r\n")), head
    assert b"\nBcc:" not in head
    header_addresses(message, "To", "Cc")
    out = io.StringIO()
    ConsoleBackend(out).send(message)
    assert "\x1b" not in out.getvalue()


def test_the_console_shows_control_characters_escaped() -> None:
    config = Settings(base_url="https://forms.example.com", mail_default_sender="f@example.com")
    delivery = notification(
        [("message", "red \x1b[31mtext\x1b[0m\x07\r\nsecond line\x9b"), ("na\x1bme", "v")],
        "Contact",
        "Hi",
        None,
        None,
        "owner@example.com",
        [],
    )
    out = io.StringIO()

    ConsoleBackend(out).send(build_notification(delivery, config))

    printed = out.getvalue()
    assert "    red \\x1b[31mtext\\x1b[0m\\x07\n    second line\\x9b\n" in printed
    assert "na\\x1bme:\n" in printed
    assert not any(ch in printed for ch in "\x1b\x07\x9b\r")
