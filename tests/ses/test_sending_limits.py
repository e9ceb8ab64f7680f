"""SES's sending limits: MaxSendRate shared by every worker process, throttling and the
daily quota retried (never dead), tags and the configuration set on every message."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, update

from formrelay.db import begin_write
from formrelay.extensions import db
from formrelay.models import Delivery, SendRate, utcnow
from formrelay.worker import make_worker

from ..conftest import BASE_URL
from ..delivery.test_ses import SES, use_ses
from ..factories import make_delivery, make_form, make_submission
from ..servers import wait_until
from ..test_worker_processes import FORMRELAY
from .fake_sesv2 import FakeSESv2

SENDER = "forms@example.com"


@pytest.fixture
def fake_ses(
    app_config: dict[str, object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakeSESv2]:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for server in FakeSESv2().run():
        server.production = True
        app_config.update(
            mail_backend="ses",
            mail_default_sender=SENDER,
            aws_region="us-east-1",
            aws_endpoint_url=server.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            ses_configuration_set="formrelay",
        )
        yield server


def fresh(delivery_id: int) -> Delivery:
    db.session.rollback()
    found = db.session.get(Delivery, delivery_id)
    assert found is not None
    db.session.refresh(found)
    return found


def test_every_ses_message_carries_the_configuration_set_and_its_tags(
    fake_ses: FakeSESv2, app: Flask
) -> None:
    form = make_form(db.session)
    delivery = make_delivery(db.session, make_submission(db.session, form))

    assert [o.status for o in make_worker(app).drain()] == ["sent"]

    [(_, request)] = fake_ses.sent
    assert request["ConfigurationSetName"] == "formrelay"
    assert request["EmailTags"] == [
        {"Name": "formrelay-delivery", "Value": str(delivery.id)},
        {"Name": "formrelay-form", "Value": str(form.id)},
    ]


def test_the_worker_paces_at_ses_max_send_rate_capped_by_formrelay_send_rate(
    fake_ses: FakeSESv2, app_config: dict[str, object], app: Flask
) -> None:
    fake_ses.quota["MaxSendRate"] = 14.0
    worker = make_worker(app)

    assert worker.pacer.rate == 14.0
    assert ("GET", "/v2/email/account") in fake_ses.calls

    fake_ses.quota["MaxSendRate"] = 28.0
    assert worker.pacer.rate == 14.0  # read again only every FORMRELAY_SES_RATE_REFRESH_SECONDS
    worker.pacer._rate_read_at -= worker.settings.ses_rate_refresh_seconds
    assert worker.pacer.rate == 28.0


def test_formrelay_send_rate_caps_ses_max_send_rate(
    fake_ses: FakeSESv2, app_config: dict[str, object]
) -> None:
    from formrelay import create_app

    fake_ses.quota["MaxSendRate"] = 14.0
    app = create_app({**app_config, "send_rate": 5.0})

    assert make_worker(app).pacer.rate == 5.0


def test_ses_unreachable_at_start_paces_at_the_sandbox_rate(
    fake_ses: FakeSESv2, app: Flask
) -> None:
    fake_ses.server_close()

    assert make_worker(app).pacer.rate == 1.0


def test_ses_unreachable_at_start_paces_at_formrelay_send_rate_when_set(
    fake_ses: FakeSESv2, app_config: dict[str, object]
) -> None:
    from formrelay import create_app

    fake_ses.server_close()
    app = create_app({**app_config, "send_rate": 14.0})

    assert make_worker(app).pacer.rate == 14.0


def test_ses_away_later_keeps_the_last_rate_it_gave(fake_ses: FakeSESv2, app: Flask) -> None:
    fake_ses.quota["MaxSendRate"] = 50.0
    worker = make_worker(app)
    assert worker.pacer.rate == 50.0

    fake_ses.server_close()
    worker.pacer._rate_read_at -= worker.settings.ses_rate_refresh_seconds

    assert worker.pacer.rate == 50.0


def test_too_many_requests_is_retried_shortly_without_counting_and_pauses_every_worker(
    fake_ses: FakeSESv2, app: Flask
) -> None:
    delivery = make_delivery(db.session, attempts=12)  # the last attempt, were it counted
    fake_ses.refuse_sends.append(("TooManyRequestsException", "Maximum sending rate exceeded."))
    before = utcnow()

    assert [o.status for o in make_worker(app).drain()] == ["failed"]

    row = fresh(delivery.id)
    assert (row.status, row.attempts) == ("failed", 12)
    assert row.last_error == (
        "SES TooManyRequestsException: Maximum sending rate exceeded. (sending faster than "
        "the account's rate: trying again shortly)"
    )
    assert row.next_attempt_at is not None
    assert before + timedelta(seconds=1) < row.next_attempt_at < before + timedelta(seconds=5)
    bucket = db.session.get(SendRate, "email")
    assert bucket is not None and bucket.next_slot >= before.timestamp() + 1.0


def test_a_used_up_daily_quota_is_retried_later_never_dead(fake_ses: FakeSESv2, app: Flask) -> None:
    delivery = make_delivery(db.session, attempts=12)
    fake_ses.refuse_sends.append(("LimitExceededException", "Daily message quota exceeded."))
    before = utcnow()

    assert [o.status for o in make_worker(app).drain()] == ["failed"]

    row = fresh(delivery.id)
    assert (row.status, row.attempts) == ("failed", 12)
    assert "the 24-hour quota is used up: trying again later" in (row.last_error or "")
    assert row.next_attempt_at is not None
    assert row.next_attempt_at > before + timedelta(minutes=25)

    # Due again, it is sent once SES accepts.
    row.next_attempt_at = utcnow()
    db.session.commit()
    assert [o.status for o in make_worker(app).drain()] == ["sent"]
    assert fresh(delivery.id).attempts == 13


# -- two worker processes, one rate ---------------------------------------------------------------
RATE = 20.0


@pytest.mark.slow
def test_two_worker_processes_share_one_max_send_rate(
    fake_ses: FakeSESv2, app: Flask, database_url: str, tmp_path: Path
) -> None:
    fake_ses.quota["MaxSendRate"] = RATE
    form = make_form(db.session, recipients=["owner@example.com"])
    ids = [
        make_delivery(
            db.session, make_submission(db.session, form), cc=["cc@example.org"] if n % 3 else []
        ).id
        for n in range(45)
    ]  # 75 recipients: about 3.7 s at 20 a second
    held = update(Delivery).where(Delivery.id.in_(ids))
    db.session.execute(held.values(next_attempt_at=utcnow() + timedelta(hours=1)))
    db.session.commit()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret",
        "FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance"),
        "FORMRELAY_BASE_URL": BASE_URL,
        "MAIL_BACKEND": "ses",
        "MAIL_DEFAULT_SENDER": SENDER,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": fake_ses.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "FORMRELAY_WORKER_POLL_SECONDS": "0.1",
        "FORMRELAY_WORKER_BATCH_SIZE": "5",
        # The pacing's precision is measured, not the priority: at nice 10 on a loaded
        # machine a worker wakes late for its slots (18.5 a second with two busy loops
        # beside the test), never early.
        "FORMRELAY_WORKER_NICE": "0",
    }
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    processes = []
    for log in logs:
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [FORMRELAY, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
                )
            )
    try:
        # Both looking for work before there is any: a worker that took longer to start
        # (at its nice 10, on a loaded machine) would find the others' batches sent.
        wait_until(
            lambda: all("sending at most" in log.read_text() for log in logs),
            30,
            lambda: "\n".join(log.read_text() for log in logs),
        )
        session = db.session()
        begin_write(session)  # SQLite: wait for the workers' writes, not fail on them
        session.execute(held.values(next_attempt_at=utcnow()))
        session.commit()
        wait_until(lambda: len(fake_ses.sent) == len(ids), 30, lambda: f"{len(fake_ses.sent)}")
    finally:
        for p in processes:
            p.send_signal(signal.SIGTERM)
        for p in processes:
            p.wait(15)
    outputs = [log.read_text() for log in logs]
    assert all("sending at most 20 recipients a second" in o for o in outputs), outputs
    assert all("SES_CONFIGURATION_SET is unset: SES reports no bounces" in o for o in outputs)
    assert all(": sent" in o for o in outputs), "both workers should have sent some"

    times = [t for t, _ in fake_ses.sent]
    counts = [len(r["Destination"]["ToAddresses"]) for _, r in fake_ses.sent]
    assert sum(counts) == 75
    # Send i+1 may start once send i's recipients have had their share of the second. The
    # promise is a ceiling shared by both workers (each pacing alone would reach twice it);
    # how close a loaded machine gets to it is make bench's (delivery_send_rate_error).
    measured = (sum(counts) - counts[-1]) / (times[-1] - times[0])
    assert measured <= RATE * 1.05, f"{measured:.2f} a second"
    db.session.rollback()
    statuses = set(db.session.scalars(select(Delivery.status).where(Delivery.id.in_(ids))))
    assert statuses == {"sent"}


# -- moto: SendEmail with the configuration set and tags, as AWS's model validates them ------
def test_moto_accepts_the_configuration_set_and_tags_and_delivers(
    moto_url: str, app_config: dict[str, object], aws_isolated: None
) -> None:
    import boto3

    from formrelay import create_app

    ses = SES(moto_url)
    ses.reset()
    ses.verify("example.com")  # the domain identity covers forms@example.com
    client = boto3.client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_configuration_set(ConfigurationSetName="formrelay")
    client.close()
    use_ses(app_config, moto_url)
    app_config.update(mail_default_sender=SENDER, ses_configuration_set="formrelay")
    app = create_app(app_config)
    with app.app_context():
        delivery = make_delivery(db.session)

        assert [o.status for o in make_worker(app).drain()] == ["sent"]

        [raw] = ses.sent()
        assert raw["source"] == SENDER
        assert fresh(delivery.id).provider_message_id == raw["id"]
        db.session.remove()
        db.engine.dispose()
