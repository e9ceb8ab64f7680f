"""POST /hooks/ses: SNS messages signed by a test CA's certificate, verified for real."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from formrelay.extensions import db
from formrelay.models import Delivery, SESEvent, SNSMessage, Suppression
from formrelay.services.sns import SNSVerifier
from formrelay.web import hooks

from ..factories import make_delivery, make_form, make_submission
from .sns import CERT_PATH, HOST, TOPIC, FakeSNSHost, LocalCA, SNSSigner


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("sns-ca"))


@pytest.fixture
def sns_host(ca: LocalCA) -> Iterator[FakeSNSHost]:
    yield from FakeSNSHost(ca).run()


@pytest.fixture
def app_config(app_config: dict[str, object]) -> dict[str, object]:
    app_config["sns_topic_arns"] = TOPIC
    return app_config


@pytest.fixture
def hooked(app: Flask, sns_host: FakeSNSHost) -> Flask:
    """The app, its verifier fetching from the fake SNS host through the test CA."""
    hooks.init_app(app, SNSVerifier(sns_host.fetcher()))
    return app


@pytest.fixture
def signer(ca: LocalCA) -> SNSSigner:
    return SNSSigner(ca)


def post(client: FlaskClient, message: dict[str, Any], **headers: str) -> TestResponse:
    return client.post(
        "/hooks/ses",
        data=json.dumps(message),
        headers={"x-amz-sns-message-type": message["Type"], **headers},
        content_type="text/plain; charset=UTF-8",  # what SNS sends
    )


def stored() -> dict[str, int]:
    db.session.rollback()
    return {
        m.__tablename__: int(db.session.scalar(select(func.count()).select_from(m)) or 0)
        for m in (SNSMessage, SESEvent, Suppression)
    }


NOTHING = {"sns_messages": 0, "ses_events": 0, "suppressions": 0}


def suppressions() -> list[tuple[str, str, str | None]]:
    db.session.rollback()
    return [
        (s.address, s.reason, s.detail)
        for s in db.session.scalars(select(Suppression).order_by(Suppression.address))
    ]


def events() -> list[tuple[str, str | None, str, int | None]]:
    db.session.rollback()
    return [
        (e.event_type, e.bounce_type, e.address, e.delivery_id)
        for e in db.session.scalars(select(SESEvent).order_by(SESEvent.id))
    ]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def mail(delivery: Delivery | None = None, **extra: Any) -> dict[str, Any]:
    """The `mail` object of an SES event, as AWS documents it (event publishing)."""
    tags: dict[str, list[str]] = {"ses:configuration-set": ["formrelay"]}
    if delivery is not None:
        tags["formrelay-delivery"] = [str(delivery.id)]
        if delivery.submission is not None:
            tags["formrelay-form"] = [str(delivery.submission.form_id)]
    return {
        "timestamp": now_iso(),
        "source": "forms@example.com",
        "sendingAccountId": "123456789012",
        "messageId": "0100018c2d7e8f2a-5d6e7f80-1a2b-4c3d-9e8f-0123456789ab-000000",
        "destination": ["owner@example.com", "bob@example.org"],
        "headersTruncated": False,
        "commonHeaders": {"from": ["forms@example.com"], "subject": "New submission"},
        "tags": tags,
        **extra,
    }


def bounce(
    recipients: list[str], *, kind: str = "Permanent", delivery: Delivery | None = None
) -> dict[str, Any]:
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": kind,
            "bounceSubType": "General" if kind == "Permanent" else "MailboxFull",
            "bouncedRecipients": [
                {
                    "emailAddress": r,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": f"smtp; 550 5.1.1 <{r}>... User unknown",
                }
                for r in recipients
            ],
            "timestamp": now_iso(),
            "feedbackId": "0100018c2d7e9abc-11112222-3333-4444-5555-666677778888-000000",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": mail(delivery),
    }


def complaint(recipients: list[str], delivery: Delivery | None = None) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": r} for r in recipients],
            "timestamp": now_iso(),
            "feedbackId": "0100018c2d7ea000-aaaabbbb-cccc-dddd-eeee-ffff00001111-000000",
            "userAgent": "Mozilla/5.0",
            "complaintFeedbackType": "abuse",
            "arrivalDate": now_iso(),
        },
        "mail": mail(delivery),
    }


@pytest.fixture
def delivery(app: Flask) -> Delivery:
    form = make_form(db.session)
    return make_delivery(
        db.session, make_submission(db.session, form), status="sent", cc=["bob@example.org"]
    )


# -- notifications ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1", "2"])
def test_a_batched_permanent_bounce_suppresses_every_recipient_and_maps_to_its_delivery(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, delivery: Delivery, version: str
) -> None:
    message = signer.notification(
        bounce(["owner@example.com", "Bob@Example.org"], delivery=delivery), version=version
    )

    response = post(client, message)

    assert (response.status_code, response.get_data(as_text=True)) == (200, "ok\n")
    assert suppressions() == [
        ("bob@example.org", "bounce", "smtp; 550 5.1.1 <Bob@Example.org>... User unknown"),
        ("owner@example.com", "bounce", "smtp; 550 5.1.1 <owner@example.com>... User unknown"),
    ]
    assert events() == [
        ("Bounce", "Permanent", "owner@example.com", delivery.id),
        ("Bounce", "Permanent", "Bob@Example.org", delivery.id),
    ]
    row = db.session.scalars(select(SESEvent)).first()
    assert row is not None and row.form_id == delivery.submission.form_id  # type: ignore[union-attr]


def test_per_recipient_complaints_suppress_each_address(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, delivery: Delivery
) -> None:
    for address in ("owner@example.com", "bob@example.org"):
        response = post(client, signer.notification(complaint([address], delivery)))
        assert response.status_code == 200

    assert suppressions() == [
        ("bob@example.org", "complaint", "feedback type abuse"),
        ("owner@example.com", "complaint", "feedback type abuse"),
    ]
    assert [e[0] for e in events()] == ["Complaint", "Complaint"]


def test_a_transient_bounce_is_recorded_but_suppresses_nothing(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, delivery: Delivery
) -> None:
    response = post(client, signer.notification(bounce(["owner@example.com"], kind="Transient")))

    assert response.status_code == 200
    assert suppressions() == []
    assert events() == [("Bounce", "Transient", "owner@example.com", None)]


def test_a_permanent_bounce_ends_the_deliveries_waiting_for_the_address(
    hooked: Flask, client: FlaskClient, signer: SNSSigner
) -> None:
    waiting = make_delivery(db.session, target="owner@example.com")

    post(client, signer.notification(bounce(["owner@example.com"]), subject=None))

    db.session.rollback()
    row = db.session.get(Delivery, waiting.id)
    assert row is not None
    assert (row.status, row.last_error) == (
        "dead",
        "suppressed: owner@example.com is on the suppression list (it bounced permanently)",
    )


def test_an_event_for_a_deleted_delivery_keeps_its_form_from_the_tags(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, delivery: Delivery
) -> None:
    form_id = delivery.submission.form_id  # type: ignore[union-attr]
    event = bounce(["owner@example.com"], delivery=delivery)
    db.session.delete(db.session.merge(delivery))
    db.session.commit()

    assert post(client, signer.notification(event)).status_code == 200

    db.session.rollback()
    [row] = db.session.scalars(select(SESEvent))
    assert (row.delivery_id, row.form_id) == (None, form_id)
    assert suppressions()[0][0] == "owner@example.com"


def test_an_identity_notification_maps_through_the_message_id(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, delivery: Delivery
) -> None:
    # Identity notifications (no configuration set) carry no tags: formrelay's Message-ID.
    event = {
        "notificationType": "Delivery",
        "delivery": {
            "timestamp": now_iso(),
            "processingTimeMillis": 546,
            "recipients": ["owner@example.com"],
            "smtpResponse": "250 ok:  Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        },
        "mail": mail(
            tags=None,
            commonHeaders={
                "messageId": f"<formrelay.{delivery.submission_id}.{delivery.id}@forms.test>"
            },
        ),
    }

    assert post(client, signer.notification(event)).status_code == 200

    assert events() == [("Delivery", None, "owner@example.com", delivery.id)]
    assert suppressions() == []


def test_a_retried_notification_is_acted_on_once(
    hooked: Flask, client: FlaskClient, signer: SNSSigner
) -> None:
    message = signer.notification(bounce(["owner@example.com"]))

    assert post(client, message).status_code == 200
    again = post(client, message)

    assert (again.status_code, again.get_data(as_text=True)) == (200, "already handled\n")
    assert stored() == {"sns_messages": 1, "ses_events": 1, "suppressions": 1}


def test_handled_message_ids_are_kept_only_while_a_replay_could_pass(
    hooked: Flask, client: FlaskClient, signer: SNSSigner
) -> None:
    old = SNSMessage(
        message_id="old",
        message_type="Notification",
        topic_arn=TOPIC,
        received_at=datetime.now(UTC) - timedelta(hours=3),
    )
    recent = SNSMessage(
        message_id="recent",
        message_type="Notification",
        topic_arn=TOPIC,
        received_at=datetime.now(UTC) - timedelta(minutes=90),
    )
    db.session.add_all([old, recent])
    db.session.commit()

    assert post(client, signer.notification(bounce(["a@example.org"]))).status_code == 200

    db.session.rollback()
    kept = set(db.session.scalars(select(SNSMessage.message_id)))
    assert "old" not in kept and "recent" in kept and len(kept) == 2


def test_the_signing_certificate_is_fetched_once(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, sns_host: FakeSNSHost
) -> None:
    for _ in range(3):
        assert post(client, signer.notification(bounce(["a@example.org"]))).status_code == 200

    assert sns_host.requests == [CERT_PATH]


# -- refused: 403 and nothing stored ---------------------------------------------------------------
def refused(response: TestResponse, why: str) -> None:
    assert response.status_code == 403
    assert why in response.get_data(as_text=True)
    assert stored() == NOTHING


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_tampered_body_is_refused(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, version: str
) -> None:
    message = signer.notification(bounce(["owner@example.com"]), version=version)
    message["Message"] = json.dumps(bounce(["someone-else@example.org"]))

    refused(post(client, message), "the signature does not match the message")


def test_a_tampered_subject_is_refused(
    hooked: Flask, client: FlaskClient, signer: SNSSigner
) -> None:
    message = signer.notification(bounce(["owner@example.com"]))
    message["Subject"] = "something else"

    refused(post(client, message), "the signature does not match the message")


def test_a_signature_version_2_message_claiming_version_1_is_refused(
    hooked: Flask, client: FlaskClient, signer: SNSSigner
) -> None:
    message = signer.notification(bounce(["owner@example.com"]), version="2")
    message["SignatureVersion"] = "1"

    refused(post(client, message), "the signature does not match the message")


def test_a_topic_not_on_the_allowlist_is_refused_without_fetching_anything(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, sns_host: FakeSNSHost
) -> None:
    other = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"
    message = signer.notification(bounce(["owner@example.com"]), TopicArn=other)

    refused(post(client, message), f"topic '{other}' is not in FORMRELAY_SNS_TOPIC_ARNS")
    assert sns_host.requests == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"http://{HOST}{CERT_PATH}", "SigningCertURL is not https"),
        (f"https://{HOST}.evil.example{CERT_PATH}", "SigningCertURL is not on an SNS host"),
        (f"https://evil.example/{HOST}{CERT_PATH}", "SigningCertURL is not on an SNS host"),
        (f"https://sns.amazonaws.com.evil.example{CERT_PATH}", "is not on an SNS host"),
        (f"https://{HOST}:8443{CERT_PATH}", "SigningCertURL names a user or a port"),
        (f"https://x@{HOST}{CERT_PATH}", "SigningCertURL names a user or a port"),
    ],
)
def test_a_certificate_from_another_host_is_never_fetched(
    hooked: Flask,
    client: FlaskClient,
    signer: SNSSigner,
    sns_host: FakeSNSHost,
    url: str,
    why: str,
) -> None:
    message = signer.notification(bounce(["owner@example.com"]), SigningCertURL=url)

    refused(post(client, message), why)
    assert sns_host.requests == []


def test_a_host_whose_tls_certificate_the_ca_did_not_sign_is_refused(
    app: Flask, client: FlaskClient, signer: SNSSigner, sns_host: FakeSNSHost, tmp_path: Path
) -> None:
    # The same server, but the verifier trusts only the system's CAs (as in production).
    from formrelay.services.sns import HTTPSFetcher

    fetcher = HTTPSFetcher(connect_to=lambda host, port: ("127.0.0.1", sns_host.port))
    hooks.init_app(app, SNSVerifier(fetcher))

    refused(post(client, signer.notification(bounce(["a@example.org"]))), "CERTIFICATE_VERIFY")


def test_a_certificate_host_that_never_answers_is_refused_within_the_timeout(
    app: Flask, client: FlaskClient, signer: SNSSigner, ca: LocalCA
) -> None:
    import socket
    import time

    from formrelay.services.sns import HTTPSFetcher

    silent = socket.socket()  # listens, never accepts: the TLS handshake hangs
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    port = silent.getsockname()[1]
    fetcher = HTTPSFetcher(
        ssl_context=ca.client_context(), connect_to=lambda h, p: ("127.0.0.1", port), timeout=0.5
    )
    hooks.init_app(app, SNSVerifier(fetcher))
    started = time.monotonic()

    try:
        refused(post(client, signer.notification(bounce(["a@example.org"]))), "timed out")
    finally:
        silent.close()
    assert time.monotonic() - started < 5


def test_a_stale_message_is_refused(hooked: Flask, client: FlaskClient, signer: SNSSigner) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    message = signer.notification(bounce(["owner@example.com"]), when=old)

    refused(post(client, message), "is not current")


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", json.dumps({"Type": "Something", "TopicArn": TOPIC}).encode()],
    ids=["empty", "not json", "not an object", "unknown type"],
)
def test_what_is_not_an_sns_message_is_refused(
    hooked: Flask, client: FlaskClient, body: bytes
) -> None:
    response = client.post("/hooks/ses", data=body, content_type="text/plain")

    assert response.status_code == 403
    assert stored() == NOTHING


def test_a_message_type_header_that_contradicts_the_body_is_refused(
    hooked: Flask, client: FlaskClient, signer: SNSSigner
) -> None:
    message = signer.notification(bounce(["owner@example.com"]))

    refused(
        post(client, message, **{"x-amz-sns-message-type": "SubscriptionConfirmation"}),
        "x-amz-sns-message-type says SubscriptionConfirmation",
    )


def test_no_topic_allowed_refuses_everything(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from formrelay.settings import get_settings, init_app

    init_app(hooked, dataclasses.replace(get_settings(hooked), sns_topic_arns=""))

    refused(post(client, signer.notification(bounce(["a@example.org"]))), "is not in")


# -- subscriptions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1", "2"])
def test_a_subscription_confirmation_is_confirmed_once_and_a_replay_is_not(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, sns_host: FakeSNSHost, version: str
) -> None:
    message = signer.subscription(version=version)

    first = post(client, message)
    replay = post(client, message)

    assert (first.status_code, first.get_data(as_text=True)) == (200, "ok\n")
    assert (replay.status_code, replay.get_data(as_text=True)) == (200, "already handled\n")
    confirmations = [r for r in sns_host.requests if "ConfirmSubscription" in r]
    assert confirmations == [message["SubscribeURL"].split(HOST, 1)[1]]
    assert stored() == {"sns_messages": 1, "ses_events": 0, "suppressions": 0}


def test_a_subscribe_url_on_another_host_is_refused(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, sns_host: FakeSNSHost
) -> None:
    message = signer.subscription(
        SubscribeURL="https://evil.example/?Action=ConfirmSubscription&Token=x"
    )

    refused(post(client, message), "SubscribeURL is not on an SNS host")
    assert [r for r in sns_host.requests if "Confirm" in r] == []


def test_a_tampered_subscription_confirmation_is_refused(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, sns_host: FakeSNSHost
) -> None:
    message = signer.subscription()
    message["Token"] = "another-token"

    refused(post(client, message), "the signature does not match")
    assert [r for r in sns_host.requests if "Confirm" in r] == []


def test_an_unsubscribe_confirmation_is_recorded_and_not_acted_on(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, sns_host: FakeSNSHost
) -> None:
    response = post(client, signer.subscription("UnsubscribeConfirmation", version="1"))

    assert response.status_code == 200
    assert [r for r in sns_host.requests if "Confirm" in r] == []
    assert stored() == {"sns_messages": 1, "ses_events": 0, "suppressions": 0}


# -- basic auth ------------------------------------------------------------------------------
@pytest.fixture
def with_basic_auth(app_config: dict[str, object]) -> None:
    app_config.update(sns_username="sns", sns_password="s3cret")


@pytest.mark.parametrize(
    "credentials", [None, ("sns", "wrong"), ("other", "s3cret")], ids=["none", "bad", "user"]
)
def test_basic_auth_when_set_is_required(
    with_basic_auth: None,
    hooked: Flask,
    client: FlaskClient,
    signer: SNSSigner,
    credentials: tuple[str, str] | None,
) -> None:
    response = client.post(
        "/hooks/ses",
        data=json.dumps(signer.notification(bounce(["a@example.org"]))),
        auth=credentials,
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="formrelay"'
    assert stored() == NOTHING


def test_basic_auth_with_the_credentials_passes(
    with_basic_auth: None, hooked: Flask, client: FlaskClient, signer: SNSSigner
) -> None:
    response = client.post(
        "/hooks/ses",
        data=json.dumps(signer.notification(bounce(["a@example.org"]))),
        auth=("sns", "s3cret"),
    )

    assert response.status_code == 200
    assert suppressions()[0][0] == "a@example.org"


def test_a_body_larger_than_any_sns_message_is_refused_unread(
    hooked: Flask, client: FlaskClient
) -> None:
    response = client.post("/hooks/ses", data=b"{" + b" " * (300 * 1024) + b"}")

    assert response.status_code == 403
    assert "too large" in response.get_data(as_text=True)
    assert stored() == NOTHING


def test_the_hook_answers_only_post(hooked: Flask, client: FlaskClient) -> None:
    assert client.get("/hooks/ses").status_code == 405


def test_what_ses_reported_shows_in_the_submissions_delivery_log(
    hooked: Flask, client: FlaskClient, signer: SNSSigner, delivery: Delivery
) -> None:
    from ..auth import AuthActions

    post(client, signer.notification(bounce(["bob@example.org"], delivery=delivery)))
    AuthActions(client).login()

    page = client.get(f"/submissions/{delivery.submission_id}").get_data(as_text=True)

    assert (
        "SES: permanent bounce from bob@example.org: smtp; 550 5.1.1 "
        "&lt;bob@example.org&gt;... User unknown"
    ) in page


# -- the migration ---------------------------------------------------------------------------------
def test_the_migration_goes_down_and_up_again(app: Flask) -> None:
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    db.session.remove()
    downgrade(revision="0008")  # the revision before 0009 (SES)
    assert "suppressions" not in inspect(db.engine).get_table_names()
    upgrade()
    tables = set(inspect(db.engine).get_table_names())
    assert {"suppressions", "ses_events", "sns_messages", "send_rates"} <= tables


# -- the whole way round ---------------------------------------------------------------------------
def test_a_permanent_bounce_of_one_notification_stops_the_next(
    app_config: dict[str, object],
    sns_host: FakeSNSHost,
    signer: SNSSigner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Sent through SES with its tags, bounced, reported through SNS, suppressed: the next
    submission's notification to that address ends dead without reaching SES."""
    from formrelay import create_app
    from formrelay.worker import make_worker

    from ..steps import submit
    from .fake_sesv2 import FakeSESv2

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for ses in FakeSESv2().run():
        ses.production = True
        app = create_app(
            {
                **app_config,
                "mail_backend": "ses",
                "mail_default_sender": "forms@example.com",
                "aws_region": "us-east-1",
                "aws_endpoint_url": ses.url,
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
                "ses_configuration_set": "formrelay",
            }
        )
        app.config["TESTING"] = True
        hooks.init_app(app, SNSVerifier(sns_host.fetcher()))
        with app.app_context():
            client = app.test_client()
            form = make_form(db.session, recipients=["gone@example.org"])
            submit(client, form, message="first")
            assert [o.status for o in make_worker(app).drain()] == ["sent"]
            [(_, sent)] = ses.sent
            tags = {t["Name"]: [t["Value"]] for t in sent["EmailTags"]}

            event = bounce(["gone@example.org"])
            event["mail"]["tags"] = {**tags, "ses:configuration-set": ["formrelay"]}
            assert post(client, signer.notification(event)).status_code == 200

            submit(client, form, message="second")
            assert [o.status for o in make_worker(app).drain()] == ["dead"]
            assert len(ses.sent) == 1
            db.session.rollback()
            last = db.session.scalars(select(Delivery).order_by(Delivery.id.desc())).first()
            assert last is not None and last.last_error == (
                "suppressed: gone@example.org is on the suppression list (it bounced permanently)"
            )
            assert events()[0][3] == int(tags["formrelay-delivery"][0])
            db.session.remove()
            db.engine.dispose()
