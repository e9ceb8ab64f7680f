"""The dashboard's SES parts: the admin status page, the suppression list page, and the
flags on a form's recipients (suppressed; unreachable from the SES sandbox)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from formrelay.extensions import db
from formrelay.models import Delivery, Suppression, User
from formrelay.services.suppressions import suppress

from ..auth import AuthActions, csrf_token, post_form
from ..factories import make_delivery, make_form, make_user
from ..web.test_admin import visible
from .fake_sesv2 import FakeSESv2

ADMIN = "admin@example.com"
MEMBER = "member@example.com"


@pytest.fixture
def users(app: Flask) -> tuple[User, User]:
    admin = make_user(db.session, ADMIN, admin=True)
    member = make_user(db.session, MEMBER, admin=False)
    db.session.commit()
    return admin, member


def text(response: object) -> str:
    return visible(response.get_data(as_text=True))  # type: ignore[attr-defined]


def add(address: str, reason: str = "bounce") -> Suppression:
    entry, _ = suppress(db.session(), address, reason=reason, source="ses", detail="550 5.1.1")
    db.session.commit()
    return entry


def suppressed() -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(select(Suppression.address).order_by(Suppression.address)))


# -- who may ----------------------------------------------------------------------------------
def actions(entry: Suppression) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/admin/suppressions", {"address": "x@example.org"}),
        (f"/admin/suppressions/{entry.id}/remove", {}),
    ]


def test_signed_out_the_suppression_pages_send_to_log_in(
    client: FlaskClient, users: tuple[User, User]
) -> None:
    entry = add("gone@example.org")
    assert client.get("/admin/suppressions").headers["Location"].startswith("/login?next=")
    token = csrf_token(client, "/login")
    for action, data in actions(entry):
        response = client.post(action, data={"csrf_token": token, **data})
        assert response.status_code == 302, action
        assert response.headers["Location"].startswith("/login?next="), action
    assert suppressed() == ["gone@example.org"]


def test_for_a_member_the_suppression_pages_do_not_exist(
    client: FlaskClient, auth: AuthActions, users: tuple[User, User]
) -> None:
    entry = add("gone@example.org")
    auth.login(MEMBER)
    assert client.get("/admin/suppressions").status_code == 404
    token = csrf_token(client, "/forms")
    for action, data in actions(entry):
        assert client.post(action, data={"csrf_token": token, **data}).status_code == 404
    assert suppressed() == ["gone@example.org"]


def test_suppression_changes_without_a_csrf_token_are_refused(
    client: FlaskClient, auth: AuthActions, users: tuple[User, User]
) -> None:
    entry = add("gone@example.org")
    auth.login(ADMIN)
    for action, data in actions(entry):
        response = client.post(action, data=data)
        assert response.status_code == 400, action
        assert "CSRF" in response.get_data(as_text=True)
    assert suppressed() == ["gone@example.org"]


# -- the admin's list -------------------------------------------------------------------------
@pytest.fixture
def as_admin(client: FlaskClient, auth: AuthActions, users: tuple[User, User]) -> FlaskClient:
    auth.login(ADMIN)
    return client


def test_the_admin_sees_the_list_and_removes_an_address(as_admin: FlaskClient) -> None:
    entry = add("gone@example.org")
    add("angry@example.org", "complaint")

    page = text(as_admin.get("/admin/suppressions"))
    assert "gone@example.org permanent bounce ses" in page
    assert "550 5.1.1" in page
    assert "angry@example.org complaint ses" in page

    response = post_form(
        as_admin, "/admin/suppressions", action=f"/admin/suppressions/{entry.id}/remove"
    )
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/suppressions")
    assert "gone@example.org is off the suppression list" in text(
        as_admin.get("/admin/suppressions")
    )
    assert suppressed() == ["angry@example.org"]


def test_the_admin_adds_an_address_by_hand_ending_its_waiting_deliveries(
    as_admin: FlaskClient,
) -> None:
    waiting = make_delivery(db.session, target="gone@example.org")

    response = post_form(
        as_admin, "/admin/suppressions", {"address": "Gone@Example.org", "detail": "smtp bounce"}
    )

    assert response.status_code == 303
    assert "gone@example.org is suppressed: nothing more is sent to it (1 waiting delivery " in (
        text(as_admin.get("/admin/suppressions"))
    )
    db.session.rollback()
    row = db.session.get(Delivery, waiting.id)
    assert row is not None and row.status == "dead"
    [entry] = db.session.scalars(select(Suppression))
    assert (entry.address, entry.reason, entry.source, entry.detail) == (
        "gone@example.org",
        "manual",
        "admin",
        "smtp bounce",
    )


def test_a_bad_address_is_refused_on_the_page(as_admin: FlaskClient) -> None:
    response = post_form(as_admin, "/admin/suppressions", {"address": "nobody"})

    assert response.status_code == 400
    assert suppressed() == []


def test_removing_an_address_that_is_not_there_is_404(as_admin: FlaskClient) -> None:
    response = post_form(as_admin, "/admin/suppressions", action="/admin/suppressions/999/remove")

    assert response.status_code == 404


def test_the_status_page_counts_the_suppressed_addresses(as_admin: FlaskClient) -> None:
    add("gone@example.org")

    page = text(as_admin.get("/admin"))

    assert "1 address receives nothing" in page
    assert "gone@example.org: bounce" in page
    assert "Amazon SES" not in page  # the console backend: nothing to ask SES


# -- the form's recipients --------------------------------------------------------------------
def test_a_suppressed_recipient_is_flagged_on_the_forms_settings(
    client: FlaskClient, auth: AuthActions, users: tuple[User, User]
) -> None:
    form = make_form(
        db.session, owner=users[1], recipients=[MEMBER, "gone@example.org"], verified=True
    )
    add("Gone@example.org")
    auth.login(MEMBER)

    page = text(client.get(f"/forms/{form.key}/settings"))

    assert (
        "gone@example.org verified suppressed suppressed: gone@example.org is on the "
        "suppression list (it bounced permanently): nothing is sent to it. An admin can "
        "remove it from the list"
    ) in page
    assert f"{MEMBER} verified suppressed" not in page


# -- with SES ---------------------------------------------------------------------------------
@pytest.fixture
def fake_ses(
    app_config: dict[str, object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakeSESv2]:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for server in FakeSESv2().run():
        app_config.update(
            mail_backend="ses",
            mail_default_sender="forms@example.com",
            aws_region="eu-west-1",
            aws_endpoint_url=server.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            ses_configuration_set="formrelay",
        )
        yield server


def test_in_the_sandbox_an_unverified_recipient_is_flagged_with_what_to_do(
    fake_ses: FakeSESv2, client: FlaskClient, auth: AuthActions, users: tuple[User, User]
) -> None:
    fake_ses.verify(MEMBER)
    form = make_form(db.session, owner=users[1], recipients=[MEMBER, "bob@example.org"])
    auth.login(MEMBER)

    page = text(client.get(f"/forms/{form.key}/settings"))
    again = text(client.get(f"/forms/{form.key}/settings"))

    assert (
        "bob@example.org verified not reachable from the SES sandbox The SES account is in "
        "the sandbox and this address is not a verified identity: SES refuses to send to "
        "it. Verify it in SES"
    ) in page
    assert f"{MEMBER} verified not reachable" not in page
    assert again == page
    # Kept for a while: the second view asked SES nothing.
    assert fake_ses.calls.count(("GET", "/v2/email/account")) == 1


def test_in_production_no_recipient_is_flagged(
    fake_ses: FakeSESv2, client: FlaskClient, auth: AuthActions, users: tuple[User, User]
) -> None:
    fake_ses.production = True
    form = make_form(db.session, owner=users[1], recipients=["bob@example.org"])
    auth.login(MEMBER)

    assert "not reachable from the SES sandbox" not in text(
        client.get(f"/forms/{form.key}/settings")
    )


def test_ses_away_leaves_the_settings_page_working(
    fake_ses: FakeSESv2, client: FlaskClient, auth: AuthActions, users: tuple[User, User]
) -> None:
    form = make_form(db.session, owner=users[1], recipients=["bob@example.org"])
    fake_ses.server_close()
    auth.login(MEMBER)

    response = client.get(f"/forms/{form.key}/settings")

    assert response.status_code == 200
    assert "not reachable" not in text(response)


def test_the_status_page_shows_the_ses_account_identity_rates_and_sandbox_recipients(
    fake_ses: FakeSESv2, as_admin: FlaskClient
) -> None:
    fake_ses.verify("example.com")
    fake_ses.enforcement = "PROBATION"
    fake_ses.quota = {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 12.0}
    make_form(db.session, name="Contact", recipients=["bob@example.org"])

    page = text(as_admin.get("/admin"))

    assert "Sandbox: only verified addresses receive mail, at most 200 a day." in page
    assert "Enforcement status PROBATION" in page
    assert "Sent, last 24 hours 12 of 200" in page
    assert "Max send rate 1 a second" in page
    assert "Identity example.com: verified for sending; DKIM SUCCESS" in page
    assert "Configuration set: formrelay, on every message" in page
    assert "Bounce 0.00% 0 of 0 ok 5.0% 10.0%" in page
    assert "Complaint 0.00% 0 of 0 ok 0.1% 0.5%" in page
    assert "Not reachable from the sandbox:" in page
    assert "bob@example.org (Contact)" in page


def test_the_status_page_says_when_ses_cannot_be_asked(
    fake_ses: FakeSESv2, as_admin: FlaskClient
) -> None:
    fake_ses.server_close()

    response = as_admin.get("/admin")

    assert response.status_code == 200
    assert "SES could not be asked: GetAccount: Could not connect" in text(response)
