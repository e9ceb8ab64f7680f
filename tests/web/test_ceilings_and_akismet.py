"""Hourly ceilings on notifications (per form and over all forms), and Akismet's verdict
through a local fake of its comment-check over HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from formrelay.extensions import db
from formrelay.models import Delivery, DeliveryStatus
from formrelay.services import inbox

from ..factories import make_form
from ..providers import FakeProvider
from .shapes import post_json, stored


@pytest.fixture
def app_config(app_config, request):
    return {**app_config, **getattr(request, "param", {})}


def all_deliveries() -> list[Delivery]:
    db.session.rollback()
    return list(db.session.scalars(select(Delivery).order_by(Delivery.id)))


def test_past_a_forms_ceiling_submissions_are_stored_and_held_with_one_notice(client, app):
    form = make_form(db.session, name="Contact", notify_limit=2)
    for n in range(5):
        assert post_json(client, form.key, {"message": str(n)}).status_code == 200
    assert len(stored()) == 5
    rows = all_deliveries()
    notices = [d for d in rows if d.submission_id is None]
    notifications = [d for d in rows if d.submission_id is not None]
    assert [d.status for d in notifications] == ["pending", "pending", "dead", "dead", "dead"]
    assert notifications[2].last_error == (
        "Held, not sent: over the form's ceiling of 2 notifications an hour. Retry to send it."
    )
    # One notice for the form and hour, however many are held.
    assert [(d.target, d.status) for d in notices] == [("owner@example.com", "pending")]
    assert notices[0].message["subject"] == (
        "Notifications of Contact are held: over the form's ceiling of 2 notifications an hour"
    )
    assert "nothing is lost" in notices[0].message["text"]
    # A held one is sent when the owner retries it.
    held = db.session.get(Delivery, notifications[2].id)
    inbox.retry_delivery(db.session, held)
    db.session.commit()
    assert db.session.get(Delivery, held.id).status == DeliveryStatus.PENDING


@pytest.mark.parametrize("app_config", [{"notify_limit_global": 3}], indirect=True)
def test_the_global_ceiling_counts_every_form(client, app):
    forms = [make_form(db.session, name=f"F{i}") for i in range(2)]
    for n in range(4):
        post_json(client, forms[n % 2].key, {"message": str(n)})
    rows = [d for d in all_deliveries() if d.submission_id is not None]
    assert [d.status for d in rows] == ["pending", "pending", "pending", "dead"]
    assert "formrelay's ceiling of 3 notifications an hour over all forms" in rows[3].last_error
    notices = [d for d in all_deliveries() if d.submission_id is None]
    assert len(notices) == 1


@pytest.mark.parametrize("app_config", [{"notify_limit_per_form": 1}], indirect=True)
def test_a_forms_own_ceiling_overrides_the_default_and_zero_means_none(client, app):
    default = make_form(db.session, name="Default")
    unlimited = make_form(db.session, name="Unlimited", notify_limit=0)
    for n in range(3):
        post_json(client, default.key, {"message": str(n)})
        post_json(client, unlimited.key, {"message": str(n)})
    by_form: dict[int, list[str]] = {}
    for d in all_deliveries():
        if d.submission is not None:
            by_form.setdefault(d.submission.form_id, []).append(d.status)
    assert by_form == {
        default.id: ["pending", "dead", "dead"],
        unlimited.id: ["pending", "pending", "pending"],
    }


def test_spam_is_not_counted_against_a_ceiling(client, app):
    form = make_form(db.session, notify_limit=1, blocked_words=["casino"])
    post_json(client, form.key, {"message": "casino"})
    post_json(client, form.key, {"message": "hello"})
    assert [d.status for d in all_deliveries()] == ["pending"]


# -- Akismet -------------------------------------------------------------------------------------
@pytest.fixture
def akismet() -> Iterator[FakeProvider]:
    fake = FakeProvider().start()
    yield fake
    fake.stop()


@pytest.fixture
def akismet_config(app_config, akismet):
    app_config.update(akismet_api_key="akismet-key", akismet_url=akismet.url, captcha_timeout=0.5)
    return app_config


def test_akismet_says_spam_and_the_submission_is_kept_as_spam(akismet_config, akismet, client, app):
    akismet.default = "true"
    form = make_form(db.session)
    r = post_json(
        client,
        form.key,
        {"email": "ann@example.org", "message": "buy now"},
        User_Agent="Bot/1.0",
        Referer="https://www.example.org/contact",
    )
    assert (r.status_code, r.json["ok"]) == (200, True)
    [kept] = stored()
    assert (kept.is_spam, kept.spam_reason) == (True, "Akismet says spam")
    [asked] = akismet.requests
    assert asked == {
        "api_key": "akismet-key",
        "blog": "http://forms.test",
        "user_ip": "127.0.0.1",
        "user_agent": "Bot/1.0",
        "referrer": "https://www.example.org/contact",
        "comment_type": "contact-form",
        "comment_content": "email: ann@example.org\n\nmessage: buy now",
        "comment_author_email": "ann@example.org",
    }


def test_akismet_says_ham_and_a_form_may_opt_out(akismet_config, akismet, client, app):
    akismet.default = "false"
    form = make_form(db.session)
    post_json(client, form.key, {"message": "hello"})
    akismet.default = "true"
    quiet = make_form(db.session, akismet=False)
    post_json(client, quiet.key, {"message": "hello"})
    assert [s.is_spam for s in stored()] == [False, False]
    assert len(akismet.requests) == 1


@pytest.mark.parametrize("trouble", ["down", "slow", "odd answer"])
def test_akismet_away_means_not_spam_and_is_logged(
    akismet_config, akismet, client, app, caplog, trouble
):
    caplog.set_level(logging.WARNING, logger="formrelay.akismet")
    if trouble == "down":
        akismet.stop()
        akismet.server = type(
            "S", (), {"shutdown": lambda s: None, "server_close": lambda s: None}
        )()
    elif trouble == "slow":
        akismet.default, akismet.delay = "true", 1.5
    else:
        akismet.default = "invalid"
    form = make_form(db.session)
    assert post_json(client, form.key, {"message": "hello"}).status_code == 200
    assert [s.is_spam for s in stored()] == [False]
    assert any("not spam" in r.getMessage() for r in caplog.records)
