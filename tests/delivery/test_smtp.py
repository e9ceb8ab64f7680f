"""The SMTP backend, driven by the worker, against a real SMTP server (aiosmtpd) in process.

TLS is real too: the tests make self-signed certificates with `cryptography` and the backend
trusts them only through FORMRELAY_MAIL_CA_FILE, so certificate and host name checks run as
they do in production.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from formrelay.cli import cli
from formrelay.extensions import db
from formrelay.models import utcnow
from formrelay.worker import Worker, make_worker

from ..factories import make_form
from ..mailserver import SENDER, MailServer, RecordingHandler, point_app_at
from ..servers import free_port
from ..steps import deliveries, statuses, submit

OWNER = "owner@example.com"
LOGIN, PASSWORD = "formrelay", "correct horse battery staple"


# -- a server that shows how it was used ---------------------------------------------------
@dataclass
class Handler(RecordingHandler):
    """Records messages with the TLS version they came over, counts EHLOs (one per plain
    connection), QUITs and logins, and can refuse chosen recipients."""

    ehlo_count: int = 0
    quit_count: int = 0
    tls_versions: list[str | None] = field(default_factory=list)
    refuse_recipients: dict[str, str] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.ehlo_count += 1
        return responses

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quit_count += 1
        return "221 Bye"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse_recipients:
            return self.refuse_recipients[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            tls = server.transport.get_extra_info("ssl_object")
            self.tls_versions.append(tls.version() if tls else None)
        return reply

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        valid = auth_data == LoginPassword(LOGIN.encode(), PASSWORD.encode())
        if valid:
            self.logins.append(LOGIN)
        return AuthResult(success=valid, handled=False)  # unhandled: aiosmtpd answers 535


class SMTPServer(MailServer):
    """MailServer with the Handler above; keyword arguments go to its Controller."""

    handler: Handler

    def __init__(self, **controller_kwargs: Any) -> None:
        handler = Handler()
        if "authenticator" in controller_kwargs:
            controller_kwargs["authenticator"] = handler.authenticate
        super().__init__(handler, **controller_kwargs)


# -- certificates --------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificate(directory: Path, *, dns: Sequence[str], ips: Sequence[str]) -> Certificate:
    """A self-signed server certificate for the given names."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])])
    now = datetime.now(UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A certificate for localhost and 127.0.0.1, where the test servers listen."""
    return make_certificate(
        tmp_path_factory.mktemp("tls") / "local", dns=["localhost"], ips=["127.0.0.1"]
    )


@pytest.fixture(scope="session")
def other_host_certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(
        tmp_path_factory.mktemp("tls") / "other", dns=["mail.example.org"], ips=[]
    )


# -- servers, each pointing the app at itself (request them before `app` or `client`) -------
@pytest.fixture
def server(request: pytest.FixtureRequest, app_config: dict[str, object]) -> Iterator[SMTPServer]:
    """A plain SMTP server; indirect parametrization passes Controller keywords."""
    with SMTPServer(**getattr(request, "param", {})) as running:
        point_app_at(app_config, running.port)
        yield running


@pytest.fixture
def tls_server(app_config: dict[str, object], certificate: Certificate) -> Iterator[SMTPServer]:
    """A server that insists on STARTTLS and a login over it, as submission servers do."""
    with SMTPServer(
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=True,
        auth_require_tls=True,
    ) as running:
        point_app_at(
            app_config,
            running.port,
            mail_use_tls=True,
            mail_username=LOGIN,
            mail_password=PASSWORD,
            mail_ca_file=str(certificate.cert_file),
        )
        yield running


@pytest.fixture
def ssl_server(app_config: dict[str, object], certificate: Certificate) -> Iterator[SMTPServer]:
    """A server speaking TLS from the first byte (port 465 style)."""
    with SMTPServer(ssl_context=certificate.server_context()) as running:
        point_app_at(
            app_config, running.port, mail_use_ssl=True, mail_ca_file=str(certificate.cert_file)
        )
        yield running


@pytest.fixture
def no_server(app_config: dict[str, object]) -> int:
    """A port nothing listens on."""
    port = free_port()
    point_app_at(app_config, port)
    return port


class Clock:
    """Real time, moved forward by hand."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mail_worker(app: Flask, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Worker:
    """The worker `formrelay worker` runs, with its settings from the app, on `clock`."""
    worker = make_worker(app)
    monkeypatch.setattr(worker, "clock", clock)
    return worker


# -- sending ---------------------------------------------------------------------------------
def test_plain_smtp_delivers_the_notification_and_records_it_sent(
    server: SMTPServer, client: FlaskClient, mail_worker: Worker, clock: Clock
) -> None:
    form = make_form(db.session)
    submit(client, form, message="hello")

    assert statuses(mail_worker.drain()) == ["sent"]

    [received] = server.received
    assert (received.mail_from, received.rcpt_tos) == (SENDER, [OWNER])
    [delivery] = deliveries()
    assert delivery.status == "sent"
    assert delivery.attempts == 1
    assert delivery.last_error is None
    assert delivery.provider_message_id == received.message["Message-ID"]
    assert delivery.sent_at is not None and delivery.sent_at <= clock()
    assert server.handler.tls_versions == [None]


def test_starttls_and_login_deliver_over_a_verified_connection(
    tls_server: SMTPServer, client: FlaskClient, mail_worker: Worker
) -> None:
    submit(client, make_form(db.session))

    assert statuses(mail_worker.drain()) == ["sent"]

    assert [r.rcpt_tos for r in tls_server.received] == [[OWNER]]
    assert tls_server.handler.logins == [LOGIN]
    assert tls_server.handler.tls_versions[0] in ("TLSv1.2", "TLSv1.3")


@pytest.fixture
def wrong_password(tls_server: SMTPServer, app_config: dict[str, object]) -> None:
    app_config["mail_password"] = "wrong"


def test_a_wrong_password_leaves_the_delivery_to_retry_with_the_servers_answer(
    wrong_password: None, tls_server: SMTPServer, client: FlaskClient, mail_worker: Worker
) -> None:
    submit(client, make_form(db.session))

    assert statuses(mail_worker.drain()) == ["failed"]

    [delivery] = deliveries()
    assert delivery.last_error == (
        f"SMTP 127.0.0.1:{tls_server.port} refused the session: "
        "535 5.7.8 Authentication credentials invalid"
    )
    assert tls_server.received == []
    assert tls_server.handler.quit_count == 1  # the refused session is closed, not leaked


@pytest.fixture(params=["unknown issuer", "another host's certificate"])
def untrusted_tls_server(
    request: pytest.FixtureRequest,
    app_config: dict[str, object],
    certificate: Certificate,
    other_host_certificate: Certificate,
) -> Iterator[tuple[SMTPServer, str]]:
    """A STARTTLS server whose certificate the backend must not accept, and OpenSSL's why."""
    if request.param == "unknown issuer":
        served, trusted = certificate, {}  # the backend knows only the system's CAs
        reason = "self-signed certificate"
    else:  # trusted, but made out to mail.example.org
        served = other_host_certificate
        trusted = {"mail_ca_file": str(other_host_certificate.cert_file)}
        reason = "IP address mismatch, certificate is not valid for '127.0.0.1'."
    with SMTPServer(tls_context=served.server_context()) as running:
        point_app_at(app_config, running.port, mail_use_tls=True, **trusted)
        yield running, reason


def test_a_server_certificate_that_is_not_trusted_stops_the_send(
    untrusted_tls_server: tuple[SMTPServer, str], client: FlaskClient, mail_worker: Worker
) -> None:
    server, reason = untrusted_tls_server
    submit(client, make_form(db.session))

    assert statuses(mail_worker.drain()) == ["failed"]

    [delivery] = deliveries()
    assert delivery.attempts == 1
    assert delivery.last_error is not None
    assert delivery.last_error.startswith(  # then OpenSSL's source line, which varies
        f"cannot connect to SMTP 127.0.0.1:{server.port}: [SSL: CERTIFICATE_VERIFY_FAILED] "
        f"certificate verify failed: {reason}"
    )
    assert server.received == []


def test_implicit_tls_delivers_over_a_verified_connection(
    ssl_server: SMTPServer, client: FlaskClient, mail_worker: Worker
) -> None:
    submit(client, make_form(db.session))

    assert statuses(mail_worker.drain()) == ["sent"]

    assert [r.rcpt_tos for r in ssl_server.received] == [[OWNER]]
    assert ssl_server.handler.tls_versions[0] in ("TLSv1.2", "TLSv1.3")


# -- connections -----------------------------------------------------------------------------
def test_one_connection_carries_a_whole_batch(
    server: SMTPServer, client: FlaskClient, mail_worker: Worker
) -> None:
    form = make_form(db.session)
    for n in range(5):
        submit(client, form, message=f"message {n}")

    assert statuses(mail_worker.drain()) == ["sent"] * 5

    assert len(server.received) == 5
    assert server.handler.ehlo_count == 1
    assert server.handler.quit_count == 1  # drain() hangs up when the outbox is empty


@pytest.mark.parametrize(
    "server", [{"command_call_limit": {"MAIL": 2}}], indirect=True, ids=["2 per connection"]
)
def test_a_server_that_closes_after_some_messages_gets_the_rest_on_a_new_connection(
    server: SMTPServer, client: FlaskClient, mail_worker: Worker
) -> None:
    # Like a provider's messages-per-connection cap: the third MAIL is answered with
    # "421 4.7.0 MAIL sent too many times" and the connection is closed.
    form = make_form(db.session)
    for n in range(5):
        submit(client, form, message=f"message {n}")

    assert statuses(mail_worker.drain()) == ["sent"] * 5

    assert len(server.received) == 5
    assert server.handler.ehlo_count == 3
    assert [d.attempts for d in deliveries()] == [1] * 5


@pytest.mark.parametrize("server", [{"timeout": 0.3}], indirect=True, ids=["0.3 s idle"])
def test_the_backend_reconnects_when_the_server_dropped_the_idle_connection(
    server: SMTPServer, client: FlaskClient, mail_worker: Worker
) -> None:
    form = make_form(db.session)
    submit(client, form, message="first")
    assert statuses(mail_worker.run_once()) == ["sent"]  # run_once keeps the connection open
    time.sleep(0.6)  # the server gives up on the idle connection and closes it
    submit(client, form, message="second")

    assert statuses(mail_worker.run_once()) == ["sent"]

    assert len(server.received) == 2
    assert server.handler.ehlo_count == 2
    assert [d.attempts for d in deliveries()] == [1, 1]
    assert mail_worker.drain() == []


# -- refusals, retries and giving up ---------------------------------------------------------
def test_a_temporary_refusal_is_retried_later_and_then_sent(
    server: SMTPServer, client: FlaskClient, mail_worker: Worker, clock: Clock
) -> None:
    submit(client, make_form(db.session))
    server.handler.refuse_with = "451 4.3.0 Mailbox busy, try again later"

    assert statuses(mail_worker.drain()) == ["failed"]
    [delivery] = deliveries()
    assert delivery.last_error == "SMTP 451 4.3.0 Mailbox busy, try again later"
    assert mail_worker.drain() == []  # not due again yet

    server.handler.refuse_with = None
    clock.advance(minutes=1)
    assert statuses(mail_worker.drain()) == ["sent"]

    [delivery] = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 2, None)
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("refusal", "error"),
    [
        (
            {"data": "550 5.7.1 Message rejected as spam"},
            "SMTP 550 5.7.1 Message rejected as spam",
        ),
        (
            {"rcpt": "550 5.1.1 No such user here"},
            f"SMTP refused recipients: {OWNER}: 550 5.1.1 No such user here",
        ),
    ],
    ids=["at DATA", "at RCPT"],
)
def test_a_permanent_refusal_ends_the_delivery_at_once(
    server: SMTPServer,
    client: FlaskClient,
    mail_worker: Worker,
    refusal: dict[str, str],
    error: str,
) -> None:
    submit(client, make_form(db.session))
    server.handler.refuse_with = refusal.get("data")
    if "rcpt" in refusal:
        server.handler.refuse_recipients[OWNER] = refusal["rcpt"]

    assert statuses(mail_worker.drain()) == ["dead"]

    [delivery] = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("dead", 1, error)
    assert server.received == []


def test_the_owner_refused_is_not_sent_even_when_a_cc_was_accepted(
    server: SMTPServer, client: FlaskClient, mail_worker: Worker
) -> None:
    server.handler.refuse_recipients[OWNER] = "550 5.1.1 No such user here"
    submit(client, make_form(db.session, allow_cc=True), message="hi", _cc="copy@example.com")

    assert statuses(mail_worker.drain()) == ["dead"]

    [delivery] = deliveries()
    assert delivery.last_error == f"SMTP refused recipients: {OWNER}: 550 5.1.1 No such user here"


def test_a_server_that_is_down_leaves_the_delivery_failed_for_a_later_attempt(
    no_server: int, client: FlaskClient, mail_worker: Worker, clock: Clock
) -> None:
    submit(client, make_form(db.session))

    assert statuses(mail_worker.drain()) == ["failed"]

    [delivery] = deliveries()
    assert delivery.status == "failed"
    assert delivery.attempts == 1
    assert delivery.last_error == (
        f"cannot connect to SMTP 127.0.0.1:{no_server}: [Errno 111] Connection refused"
    )
    # The first retry waits FORMRELAY_RETRY_BASE_SECONDS (30), give or take 20%.
    assert delivery.next_attempt_at is not None
    wait = delivery.next_attempt_at - clock()
    assert timedelta(seconds=20) < wait <= timedelta(seconds=36)


@pytest.fixture
def three_attempts(app_config: dict[str, object]) -> None:
    app_config["max_attempts"] = 3


def test_the_worker_gives_up_after_max_attempts(
    three_attempts: None, no_server: int, client: FlaskClient, mail_worker: Worker, clock: Clock
) -> None:
    submit(client, make_form(db.session))

    outcomes = []
    for _ in range(4):
        outcomes += statuses(mail_worker.drain())
        clock.advance(hours=7)  # past the longest back-off (6 hours)

    assert outcomes == ["failed", "failed", "dead"]
    [delivery] = deliveries()
    assert (delivery.status, delivery.attempts) == ("dead", 3)
    assert delivery.last_error == (
        f"gave up after 3 attempts: cannot connect to SMTP 127.0.0.1:{no_server}: "
        "[Errno 111] Connection refused"
    )


# -- formrelay send-test-email -------------------------------------------------------------
def test_send_test_email_reaches_the_smtp_server(
    server: SMTPServer, runner: FlaskCliRunner
) -> None:
    result = runner.invoke(cli, ["send-test-email", "--to", "ann@example.com"])

    assert result.exit_code == 0, result.output
    [received] = server.received
    message = received.message
    assert (received.mail_from, received.rcpt_tos) == (SENDER, ["ann@example.com"])
    assert message["Subject"] == "[formrelay] Test message"
    assert (message["From"], message["To"]) == (SENDER, "ann@example.com")
    assert message["Message-ID"].endswith("@forms.test>")
    message_id = message["Message-ID"].strip()  # a folded header keeps a leading space
    assert result.output == (
        f"Sent a test message to ann@example.com through smtp (id {message_id})\n"
    )
    body = message.get_content()
    assert "sent through the smtp backend" in body
    assert "If you can read it, mail delivery works." in body


def test_send_test_email_explains_why_it_failed(no_server: int, runner: FlaskCliRunner) -> None:
    result = runner.invoke(cli, ["send-test-email", "--to", "ann@example.com"])

    assert result.exit_code == 1
    assert result.output == (
        "Error: sending failed: cannot connect to SMTP "
        f"127.0.0.1:{no_server}: [Errno 111] Connection refused\n"
    )
