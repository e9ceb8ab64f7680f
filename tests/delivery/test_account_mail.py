"""The dashboard's own mail (confirmations, resets, invitations) goes through the outbox."""

from __future__ import annotations

from flask import Flask

from formrelay.extensions import db
from formrelay.models import Delivery, DeliveryStatus
from formrelay.services.outbox import queue_mail
from formrelay.worker import Worker, make_worker

from ..fakes import RecordingBackend
from ..mailserver import MailServer


def test_queued_account_mail_is_sent_by_the_worker_over_smtp(
    smtp_config: dict[str, object], smtp_server: MailServer, app: Flask
) -> None:
    queue_mail(
        db.session(),
        "ann@example.org",
        subject="Confirm your address",
        text="Follow this link: https://forms.test/confirm/abc\n",
    )
    db.session.commit()

    make_worker(app).drain()

    [received] = smtp_server.received
    assert received.rcpt_tos == ["ann@example.org"]
    message = received.message
    assert message["Subject"] == "Confirm your address"
    assert message["Auto-Submitted"] == "auto-generated"
    assert "https://forms.test/confirm/abc" in message.get_content()
    [delivery] = db.session.scalars(db.select(Delivery)).all()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.submission_id is None


def test_account_mail_with_html_has_both_parts(worker: Worker, outbox: RecordingBackend) -> None:
    queue_mail(
        db.session(),
        "ann@example.org",
        subject="Résumé of your week",
        text="plain words",
        html="<p>rich words</p>",
    )
    db.session.commit()

    worker.drain()

    [message] = outbox.sent
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_payload()
    assert "plain words" in plain.get_payload(decode=True).decode()
    assert "<p>rich words</p>" in html.get_payload(decode=True).decode()
    assert "Résumé" in str(make_header_text(message["Subject"]))


def test_a_failed_account_mail_is_retried_like_a_notification(
    worker: Worker, outbox: RecordingBackend
) -> None:
    from formrelay.delivery import DeliveryFailed

    queue_mail(db.session(), "ann@example.org", subject="Reset", text="link")
    db.session.commit()
    outbox.fail_with(DeliveryFailed("421 try later", retryable=True))

    worker.drain()

    [delivery] = db.session.scalars(db.select(Delivery)).all()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error == "421 try later"
    assert delivery.next_attempt_at is not None


def make_header_text(value: object) -> str:
    from email.header import decode_header, make_header

    return str(make_header(decode_header(str(value))))
