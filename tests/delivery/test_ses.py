"""The SES backend, driven by the worker, against moto's SES in server mode over real HTTP."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from email import message_from_string, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from flask import Flask
from flask.testing import FlaskClient
from moto.server import ThreadedMotoServer

from formrelay.extensions import db
from formrelay.models import Delivery, utcnow
from formrelay.settings import load_settings
from formrelay.worker import make_worker

from ..factories import make_form
from ..mailserver import SENDER
from ..servers import free_port
from ..steps import submit

OWNER = "owner@example.com"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class SES:
    """moto's SES as an operator and an observer see it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def verify(self, identity: str) -> None:
        client = boto3.client(
            "sesv2",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        try:
            client.create_email_identity(EmailIdentity=identity)
        finally:
            client.close()

    def sent(self) -> list[dict[str, Any]]:
        """The raw messages SES accepted: id, source, destinations, raw_data."""
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json") as response:
            messages: list[dict[str, Any]] = json.load(response)["ses"]["RawMessage"]
        return messages

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request):
            pass


@pytest.fixture
def aws_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep a developer's ~/.aws and the instance metadata service out of the tests."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def use_ses(app_config: dict[str, object], endpoint_url: str) -> None:
    app_config.update(
        mail_backend="ses",
        mail_default_sender=SENDER,
        aws_region=REGION,
        aws_endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        mail_timeout=5.0,
    )


@pytest.fixture
def ses(moto_url: str, app_config: dict[str, object], aws_isolated: None) -> SES:
    """An empty SES with no verified identity; the app sends through it (use before `app`)."""
    service = SES(moto_url)
    service.reset()
    use_ses(app_config, moto_url)
    return service


@pytest.fixture
def verified_sender(ses: SES) -> SES:
    ses.verify(SENDER)
    return ses


def deliver(app: Flask) -> list[str]:
    return [o.status for o in make_worker(app).drain()]


def only_delivery() -> Delivery:
    db.session.rollback()  # end the test's read snapshot to see the worker's commits
    return db.session.scalars(db.select(Delivery)).one()


def test_ses_sends_the_notification_as_raw_mime(
    verified_sender: SES, app: Flask, client: FlaskClient
) -> None:
    submit(
        client,
        make_form(db.session, allow_cc=True),
        email="ann@example.com",
        message="Grüße, Zoë",
        _cc="bob@example.com",
    )

    assert deliver(app) == ["sent"]

    [raw] = verified_sender.sent()
    assert raw["source"] == SENDER
    assert set(raw["destinations"]) == {OWNER, "bob@example.com"}
    message = message_from_string(raw["raw_data"], policy=policy.default)
    assert isinstance(message, EmailMessage)
    delivery = only_delivery()
    assert message["Subject"] == "[formrelay] New submission: Contact"
    assert message["From"] == SENDER
    assert message["To"] == OWNER
    assert message["Cc"] == "bob@example.com"
    assert message["Reply-To"] == "ann@example.com"
    assert message["Message-ID"] == (
        f"<formrelay.{delivery.submission_id}.{delivery.id}@forms.test>"
    )
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text = message.get_body(("plain",))
    assert isinstance(text, EmailMessage)
    assert "message:\n    Grüße, Zoë\n" in text.get_content().replace("\r\n", "\n")
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, None)
    assert delivery.provider_message_id == raw["id"]


def test_ses_gets_idn_addresses_idna_encoded(
    verified_sender: SES, app: Flask, client: FlaskClient
) -> None:
    form = make_form(db.session, recipients=["owner@bücher.de"], allow_cc=True)
    submit(client, form, message="hi", _cc="ann@müller.example", _replyto="bob@café.example")

    assert deliver(app) == ["sent"]

    [raw] = verified_sender.sent()
    assert set(raw["destinations"]) == {"owner@xn--bcher-kva.de", "ann@xn--mller-kva.example"}
    message = message_from_string(raw["raw_data"], policy=policy.default)
    assert (message["To"], message["Cc"], message["Reply-To"]) == (
        "owner@xn--bcher-kva.de",
        "ann@xn--mller-kva.example",
        "bob@xn--caf-dma.example",
    )


def test_a_stored_non_ascii_recipient_fails_at_once_on_ses_saying_why(
    verified_sender: SES, app: Flask, client: FlaskClient
) -> None:
    submit(client, make_form(db.session))
    delivery = only_delivery()
    delivery.target = "zoë@example.org"  # stored before formrelay refused such addresses
    db.session.commit()

    assert deliver(app) == ["dead"]

    assert only_delivery().last_error == (
        "SES cannot deliver to or from zoë@example.org: its part before the @ is not ASCII, "
        "which needs SMTPUTF8, and SMTPUTF8 is not offered"
    )
    assert verified_sender.sent() == []


def test_a_sender_identity_that_is_not_verified_ends_the_delivery_at_once(
    ses: SES, app: Flask, client: FlaskClient
) -> None:
    submit(client, make_form(db.session))

    assert deliver(app) == ["dead"]

    delivery = only_delivery()
    assert (delivery.status, delivery.attempts) == ("dead", 1)
    assert delivery.last_error == (
        f"SES MessageRejected: Did not have authority to send from email {SENDER}"
    )
    assert ses.sent() == []


@pytest.fixture
def ses_down(app_config: dict[str, object], aws_isolated: None) -> str:
    """SES configured at an address where nothing listens."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    use_ses(app_config, endpoint)
    return endpoint


def test_ses_unreachable_leaves_the_delivery_for_a_later_attempt(
    ses_down: str, app: Flask, client: FlaskClient
) -> None:
    submit(client, make_form(db.session))

    assert deliver(app) == ["failed"]

    delivery = only_delivery()
    assert delivery.attempts == 1
    assert delivery.last_error == (
        "SES unreachable: Could not connect to the endpoint URL: "
        f'"{ses_down}/v2/email/outbound-emails"'
    )
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > utcnow()


# -- botocore does not retry: the outbox does ------------------------------------------------
class FailingSESHandler(BaseHTTPRequestHandler):
    """Answers every request as SES does when it has an internal failure."""

    server: FailingSES

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(self.path)
        body = json.dumps({"message": "Internal failure, try again"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-ErrorType", "InternalFailure")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FailingSES(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FailingSESHandler)
        self.requests: list[str] = []


@pytest.fixture
def failing_ses(app_config: dict[str, object], aws_isolated: None) -> Iterator[FailingSES]:
    server = FailingSES()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    use_ses(app_config, f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_failing_send_is_tried_once_and_left_to_the_outbox(
    failing_ses: FailingSES, app: Flask, client: FlaskClient
) -> None:
    # SendEmail has no idempotency key: a retry inside botocore after a timeout could send
    # the message twice, so the one retry policy is the outbox's.
    submit(client, make_form(db.session))

    assert deliver(app) == ["failed"]

    assert failing_ses.requests == ["/v2/email/outbound-emails"]
    delivery = only_delivery()
    assert delivery.last_error == "SES InternalFailure: Internal failure, try again"


# -- settings names ----------------------------------------------------------------------------
@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """The environment of an SES deployment, before its AWS names."""
    return {
        "SECRET_KEY": "x",
        "FORMRELAY_INSTANCE_PATH": str(tmp_path),
        "MAIL_BACKEND": "ses",
        "MAIL_DEFAULT_SENDER": SENDER,
    }


@pytest.mark.parametrize(
    ("names", "key_id", "secret"),
    [
        (
            {"AWS_ACCESS_KEY": "AKIAALIAS", "AWS_SECRET_KEY": "alias-secret"},
            "AKIAALIAS",
            "alias-secret",
        ),
        (
            {
                "AWS_ACCESS_KEY_ID": "AKIASTANDARD",
                "AWS_SECRET_ACCESS_KEY": "standard-secret",
                "AWS_ACCESS_KEY": "AKIAALIAS",
                "AWS_SECRET_KEY": "alias-secret",
            },
            "AKIASTANDARD",
            "standard-secret",
        ),
    ],
    ids=["aliases", "standard names win"],
)
def test_aws_keys_are_read_under_the_alias_names_too(
    environ: dict[str, str], names: dict[str, str], key_id: str, secret: str
) -> None:
    settings = load_settings({**environ, "AWS_REGION": REGION, **names})

    assert (settings.aws_access_key_id, settings.aws_secret_access_key) == (key_id, secret)
    assert settings.masked()["AWS_SECRET_ACCESS_KEY"] == "********"


@pytest.mark.parametrize(
    ("names", "region"),
    [
        ({"AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1"),
        ({"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}, "eu-central-1"),
    ],
    ids=["AWS_DEFAULT_REGION", "AWS_REGION wins"],
)
def test_the_aws_region_is_read_from_aws_default_region_too(
    environ: dict[str, str], names: dict[str, str], region: str
) -> None:
    assert load_settings({**environ, **names}).aws_region == region


@pytest.fixture
def credentials_under_alias_names(
    verified_sender: SES, app_config: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The region and keys only under the names many Dokku guides use (use before `app`)."""
    for name in ("aws_region", "aws_access_key_id", "aws_secret_access_key"):
        del app_config[name]
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECRET_KEY", "testing")


def test_ses_sends_with_credentials_under_the_alias_names(
    credentials_under_alias_names: None, verified_sender: SES, app: Flask, client: FlaskClient
) -> None:
    # Without the keys, boto3 finds no credentials here and the send fails.
    submit(client, make_form(db.session))

    assert deliver(app) == ["sent"]

    assert len(verified_sender.sent()) == 1
