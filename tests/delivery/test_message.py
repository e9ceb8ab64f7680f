"""The notification e-mail, as the form owner's mail server receives it.

Every test posts a real submission to the public endpoint, runs the worker and reads the
message that a real SMTP server (aiosmtpd, in process) received.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from formrelay.extensions import db
from formrelay.models import Delivery, Form, Submission
from formrelay.worker import make_worker

from ..factories import make_form
from ..mailserver import SENDER, MailServer, Received, RecordingHandler, point_app_at

OWNER = "owner@example.com"
SPECIAL_FIELDS = ("_replyto", "_subject", "_next", "_cc", "_gotcha")

Send = Callable[..., list[Received]]


@pytest.fixture
def send(
    smtp_config: dict[str, object], app: Flask, client: FlaskClient, smtp_server: MailServer
) -> Send:
    """Post fields to a form and deliver them; returns the messages the SMTP server received."""

    def send(form: Form, fields: dict[str, str] | MultiDict[str, str]) -> list[Received]:
        before = len(smtp_server.received)
        response = client.post(f"/f/{form.key}", data=fields)
        assert response.status_code == 303, response.get_data(as_text=True)
        assert {o.status for o in make_worker(app).drain()} == {"sent"}
        return smtp_server.received[before:]

    return send


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML alternatives, decoded, with the wire's CRLF line ends as LF."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def only_submission() -> Submission:
    db.session.rollback()  # end the test's read snapshot to see the worker's commits
    return db.session.scalars(db.select(Submission)).one()


# -- structure -----------------------------------------------------------------------------
def test_notification_has_a_text_and_an_html_alternative(send: Send) -> None:
    [received] = send(make_form(db.session), {"name": "Ann", "message": "Hello there"})
    message = received.message

    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in message.iter_parts()] == ["utf-8", "utf-8"]
    submitted = only_submission().created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    text, html = parts(message)
    assert text == (
        "New submission to Contact.\n"
        "\n"
        "name:\n"
        "    Ann\n"
        "\n"
        "message:\n"
        "    Hello there\n"
        "\n"
        "--\n"
        f"Submitted {submitted}.\n"
    )
    assert "<p>New submission to <strong>Contact</strong>.</p>" in html
    assert "<div>Ann</div>" in html
    assert "<div>Hello there</div>" in html


# -- headers -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("form_subject", "fields", "subject"),
    [
        (None, {"message": "hi"}, "[formrelay] New submission: Contact"),
        (None, {"message": "hi", "_subject": "Quote request"}, "Quote request"),
        ("Website enquiry", {"message": "hi"}, "Website enquiry"),
        ("Website enquiry", {"message": "hi", "_subject": "Quote request"}, "Quote request"),
        (None, {"message": "hi", "_subject": "   "}, "[formrelay] New submission: Contact"),
    ],
    ids=["default", "_subject", "form's subject", "_subject over form's", "blank _subject"],
)
def test_subject_is_the_submitters_else_the_forms_else_the_default(
    send: Send, form_subject: str | None, fields: dict[str, str], subject: str
) -> None:
    [received] = send(make_form(db.session, subject=form_subject), fields)

    assert received.message["Subject"] == subject


@pytest.fixture(
    params=[
        ("[Acme forms]", "[Acme forms] New submission: Contact"),
        ("", "New submission: Contact"),
    ],
    ids=["[Acme forms]", "empty"],
)
def subject_prefix(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """FORMRELAY_MAIL_SUBJECT_PREFIX set in the environment; the expected default subject."""
    prefix, subject = request.param
    monkeypatch.setenv("FORMRELAY_MAIL_SUBJECT_PREFIX", prefix)
    return subject


def test_the_subject_prefix_comes_from_the_environment(subject_prefix: str, send: Send) -> None:
    [received] = send(make_form(db.session), {"message": "hi"})

    assert received.message["Subject"] == subject_prefix


def test_addresses_in_headers_and_envelope(send: Send) -> None:
    [received] = send(
        make_form(db.session, allow_cc=True),
        {
            "email": "ann@example.com",
            "message": "hi",
            "_cc": "bob@example.com, carol@example.com",
        },
    )
    message = received.message

    assert message["From"] == SENDER
    assert message["To"] == OWNER
    assert message["Cc"] == "bob@example.com, carol@example.com"
    assert message["Reply-To"] == "ann@example.com"
    assert "Bcc" not in message
    assert received.mail_from == SENDER
    assert received.rcpt_tos == [OWNER, "bob@example.com", "carol@example.com"]


@pytest.fixture(
    params=[
        ("Acme Forms <forms@example.com>", "Acme Forms"),
        ('"Zoë, Café" <forms@example.com>', "Zoë, Café"),
    ],
    ids=["ascii", "non-ascii"],
)
def named_sender(request: pytest.FixtureRequest, smtp_config: dict[str, object]) -> str:
    """MAIL_DEFAULT_SENDER with a display name (use before `send`); returns the name."""
    setting, name = request.param
    smtp_config["mail_default_sender"] = setting
    return str(name)


def test_a_sender_with_a_display_name_keeps_it_and_its_address(
    named_sender: str, send: Send
) -> None:
    [received] = send(make_form(db.session), {"message": "hi"})

    [sender] = received.message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (named_sender, "forms@example.com")
    assert received.mail_from == "forms@example.com"
    received.content.decode("ascii")  # a name that is not ASCII travels as encoded words


def test_replyto_field_wins_over_the_email_field(send: Send) -> None:
    [received] = send(
        make_form(db.session),
        {"email": "ann@example.com", "_replyto": "team@example.com", "message": "hi"},
    )

    assert received.message["Reply-To"] == "team@example.com"


def test_no_reply_to_or_cc_without_an_address_to_put_there(send: Send) -> None:
    [received] = send(make_form(db.session), {"message": "hi"})

    assert "Reply-To" not in received.message
    assert "Cc" not in received.message
    assert received.rcpt_tos == [OWNER]


def test_date_and_message_id(send: Send) -> None:
    [received] = send(make_form(db.session), {"message": "hi"})
    message = received.message
    submission = only_submission()
    [delivery] = submission.deliveries

    assert parsedate_to_datetime(message["Date"]) == submission.created_at.replace(microsecond=0)
    assert message["Message-ID"] == f"<formrelay.{submission.id}.{delivery.id}@forms.test>"
    assert message["Auto-Submitted"] == "auto-generated"


def test_every_delivery_has_its_own_message_id(send: Send) -> None:
    form = make_form(db.session, recipients=["owner@example.com", "partner@example.com"])

    first = send(form, {"message": "one"})
    second = send(form, {"message": "two"})

    assert [r.rcpt_tos for r in first + second] == [[OWNER], ["partner@example.com"]] * 2
    ids = [r.message["Message-ID"] for r in first + second]
    assert len(set(ids)) == 4


# -- Message-ID across a retry: the server kept the message but answered with a failure ------
class KeepsThenRefusesHandler(RecordingHandler):
    """Keeps every message; answers the first with 451, as if its acknowledgement were lost."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await super().handle_DATA(server, session, envelope)
        return "451 4.3.0 Temporary failure" if len(self.received) == 1 else "250 OK"


@pytest.fixture
def flaky_server(app_config: dict[str, object]) -> Iterator[KeepsThenRefusesHandler]:
    handler = KeepsThenRefusesHandler()
    with MailServer(handler) as server:
        point_app_at(app_config, server.port, retry_base_seconds=0)  # due again at once
        yield handler


def test_a_retried_delivery_keeps_its_message_id(
    flaky_server: KeepsThenRefusesHandler, app: Flask, client: FlaskClient
) -> None:
    client.post(f"/f/{make_form(db.session).key}", data={"message": "hi"})
    worker = make_worker(app)

    assert [o.status for o in worker.drain()] == ["failed", "sent"]

    first, retry = (r.message["Message-ID"] for r in flaky_server.received)
    assert first == retry
    db.session.rollback()
    assert db.session.scalars(db.select(Delivery.attempts)).one() == 2


# -- the fields ------------------------------------------------------------------------------
def test_special_fields_are_never_shown_as_data(send: Send) -> None:
    [received] = send(
        make_form(db.session, allow_cc=True),
        {
            "name": "Ann",
            "_replyto": "ann@example.com",
            "_subject": "Quote request",
            "_next": "https://example.com/thanks",
            "_cc": "bob@example.com",
            "_gotcha": "",
        },
    )

    for part in parts(received.message):
        for name in SPECIAL_FIELDS:
            assert name not in part
        assert "https://example.com/thanks" not in part
        assert "bob@example.com" not in part
        assert "Quote request" not in part
        assert "Ann" in part


def test_html_in_a_value_is_escaped_in_the_html_part(send: Send) -> None:
    [received] = send(
        make_form(db.session),
        {"message": "<script>alert(1)</script>", "<b>field</b>": "x"},
    )
    text, html = parts(received.message)

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;field&lt;/b&gt;" in html
    assert "<script>" not in html
    assert "<b>field</b>" not in html
    assert "    <script>alert(1)</script>\n" in text  # plain text shows what was typed


def test_multi_line_values_keep_their_lines(send: Send) -> None:
    [received] = send(make_form(db.session), {"message": "line one\r\nline two\nline three"})
    text, html = parts(received.message)

    assert "message:\n    line one\n    line two\n    line three\n" in text
    assert "<div>line one<br>\nline two<br>\nline three</div>" in html


def test_every_value_of_a_repeated_name_is_shown(send: Send) -> None:
    fields = MultiDict([("interest", "pricing"), ("interest", "support"), ("name", "Ann")])
    [received] = send(make_form(db.session), fields)
    text, html = parts(received.message)

    assert "interest:\n    pricing\n    support\n" in text
    assert "<div>pricing</div><div>support</div>" in html


def test_non_ascii_survives_the_round_trip(send: Send) -> None:
    [received] = send(
        make_form(db.session, name="Café Zoë"),
        {"name": "Zoë 日本", "message": "Grüße — 日本語のテキスト"},
    )
    message = received.message
    text, html = parts(message)

    assert message["Subject"] == "[formrelay] New submission: Café Zoë"
    assert "name:\n    Zoë 日本\n" in text
    assert "Grüße — 日本語のテキスト" in text
    assert "<div>Zoë 日本</div>" in html
    assert "New submission to <strong>Café Zoë</strong>" in html
    received.content.decode("ascii")  # on the wire: 7-bit, encoded words and quoted-printable


# -- header injection --------------------------------------------------------------------------
@pytest.mark.parametrize("line_break", ["\r\n", "\n", "\r"], ids=["CRLF", "LF", "CR"])
def test_a_line_break_in_subject_cannot_add_a_header_or_a_recipient(
    send: Send, line_break: str
) -> None:
    [received] = send(
        make_form(db.session),
        {"message": "hi", "_subject": f"Hi{line_break}Bcc: evil@example.com"},
    )
    message = received.message

    assert received.rcpt_tos == [OWNER]
    assert message["Subject"] == "Hi Bcc: evil@example.com"
    assert message.keys() == [
        "Subject",
        "From",
        "To",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
    ]


@pytest.mark.parametrize("field", ["_replyto", "email", "_cc"])
def test_an_address_with_a_line_break_is_refused_and_nothing_is_sent(
    smtp_config: dict[str, object],
    app: Flask,
    client: FlaskClient,
    smtp_server: MailServer,
    field: str,
) -> None:
    form = make_form(db.session)

    response = client.post(
        f"/f/{form.key}",
        data={"message": "hi", field: "a@example.com\r\nBcc: evil@example.com"},
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 400
    assert response.json is not None
    assert [e.get("field") for e in response.json["errors"]] == [field]
    assert make_worker(app).drain() == []
    assert smtp_server.received == []
    assert db.session.scalars(db.select(Submission)).all() == []


# -- what a submitter controls, shown and sent safely ------------------------------------------
HIDDEN = ("_replyto", "_subject", "_next", "_cc", "_gotcha", "_language", "_template", "_format")


@pytest.mark.parametrize(
    ("name", "shown"), [*((name, False) for name in HIDDEN), ("_foo", True), ("_source", True)]
)
def test_formspree_special_names_are_hidden_and_other_underscored_names_shown(
    send: Send, name: str, shown: bool
) -> None:
    value = {"_replyto": "x@example.org", "_next": "https://x.example/", "_cc": "c@example.org"}
    fields = {"message": "hi", name: value.get(name, "" if name == "_gotcha" else "de")}
    [received] = send(make_form(db.session, allow_cc=True), fields)
    text, html = parts(received.message)

    assert (f"\n{name}:\n" in text) is shown
    assert (f">{name}</th>" in html) is shown


def test_a_field_name_with_line_breaks_is_shown_escaped_on_one_line(send: Send) -> None:
    [received] = send(
        make_form(db.session),
        {"message": "hi", "x\r\n\r\nAmount:\n    1000 EUR\x1b[0m": "y"},
    )
    text, html = parts(received.message)

    assert "\nx\\r\\n\\r\\nAmount:\\n    1000 EUR\\x1b[0m:\n    y\n" in text
    assert "\nAmount:" not in text
    assert ">x\\r\\n\\r\\nAmount:\\n    1000 EUR\\x1b[0m</th>" in html


def test_control_characters_are_stripped_from_the_subject(send: Send) -> None:
    [received] = send(make_form(db.session), {"message": "hi", "_subject": "Hi\x1b[2J\x7fthere"})

    assert received.message["Subject"] == "Hi [2J there"
    assert b"\x1b" not in received.content


@pytest.mark.parametrize(
    ("replyto", "header", "on_the_wire"),
    [
        ("Bob <bob@example.net>", "Bob <bob@example.net>", b"Reply-To: Bob <bob@example.net>"),
        (
            "Zoë Café <zoe@example.net>",
            "Zoë Café <zoe@example.net>",
            b"Reply-To: =?utf-8?b?Wm/DqyBDYWbDqQ==?= <zoe@example.net>",
        ),
        ("ann@bücher.de", "ann@xn--bcher-kva.de", b"Reply-To: ann@xn--bcher-kva.de"),
    ],
    ids=["ascii name", "non-ascii name", "IDN"],
)
def test_reply_to_keeps_a_display_name_and_sends_an_idn_domain_ascii(
    send: Send, replyto: str, header: str, on_the_wire: bytes
) -> None:
    [received] = send(make_form(db.session), {"message": "hi", "_replyto": replyto})

    assert received.message["Reply-To"] == header
    assert on_the_wire + b"\r\n" in received.content


@pytest.fixture(params=[True, False], ids=["SMTPUTF8 offered", "SMTPUTF8 not offered"])
def utf8_server(
    request: pytest.FixtureRequest, app_config: dict[str, object]
) -> Iterator[MailServer]:
    """A real SMTP server that offers SMTPUTF8 or not (the app points at it)."""
    with MailServer(enable_SMTPUTF8=request.param) as server:
        point_app_at(app_config, server.port)
        yield server


def test_idn_addresses_go_idna_encoded_in_headers_and_envelope(
    utf8_server: MailServer, app: Flask, client: FlaskClient
) -> None:
    form = make_form(db.session, recipients=["owner@bücher.de"], allow_cc=True)
    response = client.post(
        f"/f/{form.key}",
        data={"message": "hi", "_cc": "ann@müller.example", "_replyto": "bob@café.example"},
    )
    assert response.status_code == 303

    assert [o.status for o in make_worker(app).drain()] == ["sent"]
    [received] = utf8_server.received
    assert received.rcpt_tos == ["owner@xn--bcher-kva.de", "ann@xn--mller-kva.example"]
    message = received.message
    assert (message["To"], message["Cc"], message["Reply-To"]) == (
        "owner@xn--bcher-kva.de",
        "ann@xn--mller-kva.example",
        "bob@xn--caf-dma.example",
    )
    received.content.decode("ascii")


def stored_before_todays_rules(**changes: object) -> None:
    """Give the only delivery addresses that formrelay no longer accepts (older rows)."""
    db.session.rollback()
    delivery = db.session.scalars(db.select(Delivery)).one()
    for name, value in changes.items():
        setattr(delivery, name, value)
    db.session.commit()


def test_a_stored_non_ascii_cc_goes_by_smtputf8_or_is_left_out(
    utf8_server: MailServer, app: Flask, client: FlaskClient
) -> None:
    client.post(f"/f/{make_form(db.session).key}", data={"message": "hi"})
    stored_before_todays_rules(cc=["zoë@example.org"])

    assert [o.status for o in make_worker(app).drain()] == ["sent"]
    [received] = utf8_server.received
    if utf8_server.controller.SMTP_kwargs.get("enable_SMTPUTF8"):
        assert received.rcpt_tos == [OWNER, "zoë@example.org"]
    else:  # the owner's copy still leaves
        assert received.rcpt_tos == [OWNER]


def test_a_stored_non_ascii_recipient_goes_by_smtputf8_or_fails_saying_why(
    utf8_server: MailServer, app: Flask, client: FlaskClient
) -> None:
    client.post(f"/f/{make_form(db.session).key}", data={"message": "hi"})
    stored_before_todays_rules(target="zoë@example.org")

    [outcome] = make_worker(app).drain()
    db.session.rollback()
    delivery = db.session.scalars(db.select(Delivery)).one()
    if utf8_server.controller.SMTP_kwargs.get("enable_SMTPUTF8"):
        assert outcome.status == "sent"
        assert [r.rcpt_tos for r in utf8_server.received] == [["zoë@example.org"]]
    else:
        assert (outcome.status, delivery.status) == ("dead", "dead")
        assert delivery.last_error == (
            f"SMTP 127.0.0.1:{utf8_server.port} cannot deliver to or from zoë@example.org: "
            "its part before the @ is not ASCII, which needs SMTPUTF8, and SMTPUTF8 is not "
            "offered"
        )
        assert utf8_server.received == []
