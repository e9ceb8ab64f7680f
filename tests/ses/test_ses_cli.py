"""`formrelay ses setup` and `formrelay ses status` against sesv2's wire format (a local
fake: moto 5 gives no DKIM tokens and has no GetAccount)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskCliRunner

from formrelay.cli import cli
from formrelay.extensions import db
from formrelay.models import SESEvent, utcnow

from ..factories import make_delivery, make_form, make_submission
from .fake_sesv2 import ACCOUNT_ID, FakeSESv2

REGION = "eu-west-1"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:formrelay-events"


@pytest.fixture
def fake_ses(
    app_config: dict[str, object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakeSESv2]:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for server in FakeSESv2().run():
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", server.url)
        app_config.update(
            mail_backend="ses",
            mail_default_sender="forms@example.com",
            aws_region=REGION,
            aws_endpoint_url=server.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield server


@pytest.fixture
def formrelay(
    fake_ses: FakeSESv2, app: Flask, runner: FlaskCliRunner, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")

    def invoke(*args: str) -> Result:
        info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
        return runner.invoke(cli, list(args), obj=info)

    return invoke


def policy_of(output: str) -> dict[str, object]:
    block = output.split("AmazonSESFullAccess", 1)[1].split("\n\n", 1)[1].split("\n\n", 1)[0]
    parsed: dict[str, object] = json.loads(block)
    return parsed


# -- setup ---------------------------------------------------------------------------------------
def test_setup_creates_the_identity_and_prints_its_dkim_records_and_policy(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2
) -> None:
    result = formrelay(
        "ses", "setup", "--domain", "Example.COM", "--mail-from", "bounce.example.com",
        "--events-topic", TOPIC,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    out = result.output
    tokens = fake_ses.identities["example.com"]["DkimAttributes"]["Tokens"]
    assert len(tokens) == 3
    assert out.startswith(
        "Domain identity example.com (eu-west-1): created, not verified yet, DKIM PENDING.\n"
    )
    for t in tokens:
        assert re.search(
            rf"^   {t}\._domainkey\.example\.com +CNAME  {t}\.dkim\.amazonses\.com$", out, re.M
        )
        assert f"   {t}._domainkey.example.com. 1800 IN CNAME {t}.dkim.amazonses.com.\n" in out
    assert "   bounce.example.com. 1800 IN MX 10 feedback-smtp.eu-west-1.amazonses.com.\n" in out
    assert '   bounce.example.com. 1800 IN TXT "v=spf1 include:amazonses.com ~all"\n' in out
    assert (
        '   _dmarc.example.com. 1800 IN TXT "v=DMARC1; p=none; '
        'rua=mailto:dmarc-reports@example.com"\n'
    ) in out
    mail_from = fake_ses.identities["example.com"]["MailFromAttributes"]
    assert mail_from["MailFromDomain"] == "bounce.example.com"
    assert fake_ses.configuration_sets == {
        "formrelay": {
            "formrelay-sns": {
                "Enabled": True,
                "MatchingEventTypes": ["BOUNCE", "COMPLAINT", "DELIVERY"],
                "SnsDestination": {"TopicArn": TOPIC},
            }
        }
    }
    assert "Set SES_CONFIGURATION_SET=formrelay so every message carries it." in out
    assert f"FORMRELAY_SNS_TOPIC_ARNS={TOPIC}" in out
    arn = f"arn:aws:ses:{REGION}:{ACCOUNT_ID}"
    assert policy_of(out)["Statement"] == [
        {
            "Sid": "FormrelaySend",
            "Effect": "Allow",
            "Action": ["ses:SendEmail", "ses:SendRawEmail"],
            "Resource": [f"{arn}:identity/example.com", f"{arn}:configuration-set/formrelay"],
        },
        {
            "Sid": "FormrelayReadLimits",
            "Effect": "Allow",
            "Action": ["ses:GetAccount"],
            "Resource": "*",
        },
        {
            "Sid": "FormrelayCheckSandboxRecipients",
            "Effect": "Allow",
            "Action": ["ses:GetEmailIdentity"],
            "Resource": f"{arn}:identity/*",
        },
    ]
    pending = out.split("Still pending:\n", 1)[1]
    assert "  - DKIM is PENDING: add the three CNAME records" in pending
    assert "  - MAIL FROM bounce.example.com is PENDING: add its MX and TXT records" in pending
    assert "  - the account is in the sandbox" in pending
    assert "--events-topic" not in pending


def test_setup_run_again_changes_nothing_and_shows_what_is_pending(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2
) -> None:
    args = ("ses", "setup", "--domain", "example.com", "--events-topic", TOPIC)
    first = formrelay(*args)
    tokens = list(fake_ses.identities["example.com"]["DkimAttributes"]["Tokens"])
    fake_ses.verify("example.com")
    fake_ses.production = True

    again = formrelay(*args)

    assert again.exit_code == 0, again.output
    assert fake_ses.identities["example.com"]["DkimAttributes"]["Tokens"] == tokens
    assert again.output.startswith(
        "Domain identity example.com (eu-west-1): exists, verified, DKIM SUCCESS.\n"
    )
    assert "Configuration set formrelay: exists." in again.output
    assert f"Event destination updated: Bounce, Complaint and Delivery to {TOPIC}." in again.output
    for t in tokens:  # the records are shown again, the same
        assert f"{t}._domainkey.example.com. 1800 IN CNAME" in again.output
    assert "Still pending" not in again.output
    assert again.output.rstrip().endswith("Nothing pending: example.com is ready to send.")
    assert first.output != again.output


def test_setup_run_again_without_the_topic_keeps_the_one_given_before(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2
) -> None:
    formrelay("ses", "setup", "--domain", "example.com", "--events-topic", TOPIC)

    again = formrelay("ses", "setup", "--domain", "example.com")

    assert f"Event destination exists: Bounce, Complaint and Delivery to {TOPIC}." in again.output
    assert "no SNS topic" not in again.output
    assert fake_ses.configuration_sets["formrelay"]["formrelay-sns"]["SnsDestination"] == {
        "TopicArn": TOPIC
    }


def test_setup_says_which_sender_to_set(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2
) -> None:
    given = formrelay("ses", "setup", "--domain", "example.com", "--from", "hello@example.com")
    other = formrelay("ses", "setup", "--domain", "example.org")

    assert "Set MAIL_DEFAULT_SENDER=hello@example.com to send as that address." in given.output
    assert "Set MAIL_DEFAULT_SENDER to an address at example.org (forms@example.org)." in (
        other.output
    )


def test_setup_without_a_topic_says_bounces_are_not_reported(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2
) -> None:
    result = formrelay("ses", "setup", "--domain", "example.com")

    assert result.exit_code == 0
    assert "no SNS topic for bounces and complaints: run again with --events-topic" in (
        result.output
    )
    assert "2. SPF: without --mail-from" in result.output
    assert fake_ses.configuration_sets == {"formrelay": {}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--domain", "not a domain"], "'not a domain' is not a domain name"),
        (["--domain", "example.com", "--mail-from", "bounce.other.org"], "subdomain"),
        (["--domain", "example.com", "--from", "me@other.org"], "an address at example.com"),
        (["--domain", "example.com", "--events-topic", "topic"], "not an SNS topic ARN"),
    ],
)
def test_setup_refuses_bad_options(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2, args: list[str], message: str
) -> None:
    result = formrelay("ses", "setup", *args)

    assert result.exit_code == 2
    assert message in result.output
    assert fake_ses.calls == []


def test_setup_says_what_ses_refused(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = formrelay("ses", "setup", "--domain", "example.com", "--account-id", "1")
    fake_ses.identities.clear()
    fake_ses.server_close()  # SES away

    away = formrelay("ses", "setup", "--domain", "example.com", "--account-id", "1")

    assert result.exit_code == 0
    assert away.exit_code == 1
    assert "Error: CreateEmailIdentity: Could not connect to the endpoint URL" in away.output


# -- status ---------------------------------------------------------------------------------------
def test_status_in_the_sandbox_flags_recipients_that_are_not_verified(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2
) -> None:
    fake_ses.verify("example.com")
    fake_ses.verify("ann@example.org")
    make_form(db.session, name="Contact", recipients=["ann@example.org", "bob@example.org"])
    make_form(db.session, name="Jobs", recipients=["bob@example.org", "cat@verified.example"])
    fake_ses.verify("verified.example")  # a verified domain covers its addresses

    result = formrelay("ses", "status")

    assert result.output.splitlines() == [
        "Account (eu-west-1): sandbox: only verified addresses receive mail (request "
        "production access in the SES console)",
        "Sending: enabled, enforcement status HEALTHY",
        "Quota: sent 0 of 200 in the last 24 hours; at most 1 a second",
        "Identity example.com: verified for sending; DKIM SUCCESS",
        "Configuration set: none (SES_CONFIGURATION_SET unset: no events are published)",
        "SES events: none recorded yet (bounces and complaints reach formrelay once "
        "/hooks/ses is subscribed to the configuration set's SNS topic; see docs/ses.md)",
        "Bounce rate 0.00% (0 of 0 messages sent in 30 days): ok (SES warns at 5.0%, at risk "
        "from 10.0%)",
        "Complaint rate 0.00% (0 of 0 messages sent in 30 days): ok (SES warns at 0.1%, at "
        "risk from 0.5%)",
        "Sandbox: bob@example.org (Contact, Jobs) is not a verified identity: SES refuses to "
        "send to it. Verify it in SES or request production access.",
    ]
    assert result.exit_code == 0


def test_status_in_production_shows_the_quota_and_the_enforcement_status(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2
) -> None:
    fake_ses.production = True
    fake_ses.enforcement = "PROBATION"
    fake_ses.quota = {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 1234.0}
    fake_ses.verify("example.com")
    make_form(db.session, recipients=["bob@example.org"])

    result = formrelay("ses", "status")

    lines = result.output.splitlines()
    assert lines[:3] == [
        "Account (eu-west-1): production access",
        "Sending: enabled, enforcement status PROBATION",
        "Quota: sent 1234 of 50000 in the last 24 hours; at most 14 a second",
    ]
    assert not any(line.startswith("Sandbox:") for line in lines)


def record_events(sent: int, bounced: int, complained: int) -> None:
    form = make_form(db.session)
    now = utcnow()
    for i in range(sent):
        d = make_delivery(
            db.session,
            make_submission(db.session, form),
            status="sent",
            sent_at=now - timedelta(days=1),
            provider_message_id=f"m{i}",
        )
        kinds = []
        if i < bounced:
            kinds.append(("Bounce", "Permanent"))
        if bounced <= i < bounced + complained:
            kinds.append(("Complaint", None))
        for kind, bounce_type in kinds:
            db.session.add(
                SESEvent(
                    sns_message_id=f"sns{i}{kind}",
                    event_type=kind,
                    bounce_type=bounce_type,
                    address="owner@example.com",
                    ses_message_id=f"m{i}",
                    delivery_id=d.id,
                    occurred_at=now,
                )
            )
    # Mail sent through SMTP before the move to SES is not counted.
    make_delivery(
        db.session,
        make_submission(db.session, form),
        status="sent",
        sent_at=now - timedelta(days=2),
        provider_message_id="<formrelay.1.1@forms.test>",
    )
    # A transient bounce is no bounce for the rate.
    db.session.add(
        SESEvent(
            sns_message_id="t",
            event_type="Bounce",
            bounce_type="Transient",
            address="x@example.com",
            ses_message_id="m0",
            occurred_at=now,
        )
    )
    db.session.commit()


@pytest.mark.parametrize(
    ("bounced", "complained", "bounce_level", "complaint_level", "exit_code"),
    [
        (0, 0, "ok", "ok", 0),
        (6, 0, "warning", "ok", 0),
        (11, 0, "at risk", "ok", 1),
        (0, 1, "ok", "at risk", 1),  # 1 in 100 is 1%: past 0.5%
    ],
)
def test_status_compares_the_recorded_rates_with_ses_thresholds(
    formrelay: Callable[..., Result],
    fake_ses: FakeSESv2,
    bounced: int,
    complained: int,
    bounce_level: str,
    complaint_level: str,
    exit_code: int,
) -> None:
    fake_ses.production = True
    fake_ses.verify("example.com")
    record_events(100, bounced, complained)

    result = formrelay("ses", "status")

    assert (
        f"Bounce rate {bounced / 100:.2%} ({bounced} of 100 messages sent in 30 days): "
        f"{bounce_level} "
    ) in result.output
    assert (
        f"Complaint rate {complained / 100:.2%} ({complained} of 100 messages sent in 30 days): "
        f"{complaint_level} "
    ) in result.output
    assert result.exit_code == exit_code
    assert "SES events: the last recorded 20" in result.output


def test_status_exits_1_when_sending_is_paused_or_the_identity_missing(
    formrelay: Callable[..., Result], fake_ses: FakeSESv2
) -> None:
    fake_ses.sending_enabled = False
    fake_ses.enforcement = "SHUTDOWN"

    result = formrelay("ses", "status")

    assert result.exit_code == 1
    assert "Sending: PAUSED, enforcement status SHUTDOWN" in result.output
    assert (
        "Identity example.com: not in SES; run `formrelay ses setup --domain example.com`"
    ) in result.output


def test_status_without_a_region_says_so(
    app_config: dict[str, object], app: Flask, runner: FlaskCliRunner
) -> None:
    info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
    result = runner.invoke(cli, ["ses", "status"], obj=info)

    assert result.exit_code == 1
    assert "AWS_REGION is not set" in result.output
