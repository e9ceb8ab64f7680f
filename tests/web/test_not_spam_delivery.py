"""Spam of every reason keeps what a submission carries (its special fields, its files), and
"Not spam" sends exactly the notification the same submission gets when it is not spam,
as a real SMTP server receives it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from formrelay.extensions import db
from formrelay.models import Form, Submission
from formrelay.services import spam
from formrelay.settings import get_settings
from formrelay.worker import make_worker

from ..auth import AuthActions, post_form
from ..factories import make_form
from ..mailserver import MailServer, point_app_at
from ..providers import FakeProvider
from ..uploads import PDF, post

OWNER = "owner@example.com"
CLIENT_ADDRESS = "203.0.113.7"
SENDER = "ann@example.org"
# Every spam rule could fire on this submission; each case turns one on.
SUBMISSION: list[Any] = [
    ("email", SENDER),
    ("message", "A quokka sighting: https://example.org/quokka"),
    ("_replyto", "Ann Example <ann.reply@example.org>"),
    ("_subject", "Quokka sighting"),
    ("_cc", "bob@example.org, carol@example.org"),
    ("photo", ("sighting.pdf", PDF, "application/pdf")),
]
# The rules off: the form as it is when the same submission is not spam.
RULES_OFF: dict[str, object] = {
    "blocked_addresses": [],
    "blocked_senders": [],
    "blocked_words": [],
    "max_links": None,
    "min_seconds": None,
    "captcha_provider": None,
    "captcha_secret": None,
    "akismet": False,
}


def stamp(seconds_ago: float) -> str:
    return spam.sign_page_load(get_settings().secret_key, time.time() - seconds_ago)


# reason -> (the form's rules, what the submission adds, the spam reason stored: * is a number)
REASONS: dict[str, tuple[dict[str, object], Any, str]] = {
    "honeypot": ({}, lambda: [("_gotcha", "bot")], "honeypot field was filled"),
    "blocked address": (
        {"blocked_addresses": ["203.0.113.0/24"]},
        list,
        f"sent from a blocked address ({CLIENT_ADDRESS})",
    ),
    "blocked sender": ({"blocked_senders": [SENDER]}, list, f"from a blocked sender ({SENDER})"),
    "blocked word": ({"blocked_words": ["quokka"]}, list, "contains a blocked word (quokka)"),
    "links": ({"max_links": 0}, list, "1 links (at most 0 allowed)"),
    "too soon": (
        {"min_seconds": 60},
        lambda: [("_formrelay", stamp(1))],
        "sent 1.* s after the page loaded (at least 60 s expected)",
    ),
    "unsigned page-load time": (
        {"min_seconds": 60},
        lambda: [("_formrelay", "1700000000000.forged")],
        "its page-load time was not signed by formrelay.js",
    ),
    "CAPTCHA away": (
        {"captcha_provider": "turnstile", "captcha_secret": "secret"},
        lambda: [("cf-turnstile-response", "token")],
        "not verified: the turnstile CAPTCHA service did not answer",
    ),
    "Akismet": ({"akismet": True}, list, "Akismet says spam"),
}


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    with MailServer() as running:
        yield running


@pytest.fixture
def providers() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    captcha, akismet_ = FakeProvider().start(), FakeProvider().start()
    captcha.status, captcha.default = 500, "<html>away</html>"
    akismet_.default = "true"
    yield captcha, akismet_
    captcha.stop()
    akismet_.stop()


@pytest.fixture
def app_config(app_config, smtp, providers, tmp_path):
    captcha, akismet_ = providers
    point_app_at(app_config, smtp.port)
    app_config.update(
        upload_dir=str(tmp_path / "uploads"),
        attach_max_bytes=50_000,
        turnstile_verify_url=captcha.url,
        akismet_api_key="akismet-key",
        akismet_url=akismet_.url,
        captcha_timeout=0.5,
    )
    return app_config


def submit(client, form: Form, extra: list[Any]) -> Submission:
    r = post(client, form, SUBMISSION + extra, environ_base={"REMOTE_ADDR": CLIENT_ADDRESS})
    assert r.status_code == 200, r.json
    db.session.rollback()
    submission = db.session.get(Submission, r.json["id"])
    assert submission is not None
    return submission


def received_as_seen(app, smtp: MailServer) -> dict[str, object]:
    """The one message the worker sends now, as its readers see it (the time and the
    signed file links, which differ from one submission to the next, left out)."""
    make_worker(app).drain()
    [received] = smtp.received
    smtp.received.clear()
    message = received.message
    text = message.get_body(("plain",)).get_content()
    text = re.sub(r"Submitted \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "Submitted (time)", text)
    text = re.sub(r"http://forms\.test/files/\S+", "(file link)", text)
    return {
        "recipients": sorted(received.rcpt_tos),
        "To": message["To"],
        "Cc": message["Cc"],
        "Reply-To": message["Reply-To"],
        "Subject": message["Subject"],
        "text": text,
        "files": [(a.get_filename(), a.get_content()) for a in message.iter_attachments()],
    }


@pytest.mark.parametrize("reason", REASONS)
def test_not_spam_sends_what_the_submission_sends_when_it_is_not_spam(app, client, smtp, reason):
    rules, trap, why = REASONS[reason]
    form = make_form(db.session, allow_cc=True, files_enabled=True, **{**RULES_OFF, **rules})
    kept = submit(client, form, trap())
    assert kept.is_spam and re.fullmatch(re.escape(why).replace(r"\*", r"\d+"), kept.spam_reason)
    assert (kept.reply_to, kept.subject) == (
        "Ann Example <ann.reply@example.org>",
        "Quokka sighting",
    )
    assert kept.cc == ["bob@example.org", "carol@example.org"]
    assert [a.filename for a in kept.attachments] == ["sighting.pdf"]
    AuthActions(client).login(OWNER)
    detail = f"/submissions/{kept.id}"
    assert post_form(client, detail, action=f"{detail}/not-spam").status_code == 303
    not_spam = received_as_seen(app, smtp)

    for name, value in RULES_OFF.items():
        setattr(form, name, value)
    db.session.commit()
    spam.forget_policy(form.key)
    ham = submit(client, form, [])
    assert not ham.is_spam
    assert not_spam == received_as_seen(app, smtp)
    assert not_spam["recipients"] == [
        "bob@example.org",
        "carol@example.org",
        OWNER,
    ]
    assert not_spam["Reply-To"] == "Ann Example <ann.reply@example.org>"
    assert not_spam["files"] == [("sighting.pdf", PDF)]


def test_invalid_special_fields_of_honeypot_spam_are_dropped_not_reported(app, client):
    form = make_form(db.session, allow_cc=False)
    parts = [
        ("email", "not an address"),
        ("message", "hi"),
        ("_replyto", "also not"),
        ("_subject", "Line\nbreak"),
        ("_cc", "bob@example.org"),  # this form sends no copies
        ("_gotcha", "bot"),
    ]
    r = post(client, form, parts)
    assert r.status_code == 200, r.json
    db.session.rollback()
    kept = db.session.get(Submission, r.json["id"])
    assert kept is not None and kept.is_spam
    assert (kept.reply_to, kept.subject, kept.cc) == (None, "Line break", [])
