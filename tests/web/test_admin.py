"""Admin pages: the status of the outbox, workers and mail; every user; every form.

They exist only for admins: a member gets 404 as for any address that is not there, a
visitor who is not signed in is sent to log in.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from formrelay.extensions import db
from formrelay.models import Delivery, DeliveryStatus, Form, Role, Submission, User, utcnow
from formrelay.web.dashboard import admin as admin_views
from formrelay.worker.heartbeat import WorkerIdentity, record_beat

from ..auth import AuthActions, csrf_token, post_form
from ..factories import make_delivery, make_form, make_submission, make_user
from ..mailserver import MailServer, point_app_at
from ..servers import free_port

ADMIN = "admin@example.com"
MEMBER = "member@example.com"


@pytest.fixture
def admin_user(app: Flask) -> User:
    user = make_user(db.session, ADMIN, admin=True)
    db.session.commit()
    return user


@pytest.fixture
def member(app: Flask) -> User:
    user = make_user(db.session, MEMBER, admin=False)
    db.session.commit()
    return user


@pytest.fixture
def as_admin(client: FlaskClient, auth: AuthActions, admin_user: User, member: User) -> FlaskClient:
    auth.login(ADMIN)
    return client


@pytest.fixture
def as_member(
    client: FlaskClient, auth: AuthActions, admin_user: User, member: User
) -> FlaskClient:
    auth.login(MEMBER)
    return client


@pytest.fixture
def member_form(member: User) -> Form:
    return make_form(db.session, owner=member, name="Member contact", recipients=[MEMBER])


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


def visible(html: str) -> str:
    """The page's text as a reader sees it: tags dropped, white space collapsed."""
    inline = re.sub(r"</?(strong|em|code|span|a|small|time)\b[^>]*>", "", html)
    return " ".join(re.sub(r"<[^>]+>", " ", inline).split())


def user_row(email: str) -> User:
    db.session.rollback()  # see what the requests committed
    user = db.session.scalar(select(User).where(User.email == email))
    assert user is not None
    return user


# -- who may see the admin pages -----------------------------------------------------------------
def get_pages(member: User, form: Form) -> list[str]:
    return ["/admin", "/admin/users", "/admin/forms", f"/admin/users/{member.id}/delete"]


def post_actions(member: User, form: Form) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/admin/check-mail", {}),
        ("/admin/users/invite", {"email": "new@example.com"}),
        (f"/admin/users/{member.id}/role", {"role": "admin"}),
        (f"/admin/users/{member.id}/disable", {}),
        (f"/admin/users/{member.id}/enable", {}),
        (f"/admin/users/{member.id}/delete", {}),
        (f"/admin/forms/{form.key}/disable", {}),
        (f"/admin/forms/{form.key}/enable", {}),
    ]


def test_a_visitor_who_is_not_signed_in_is_sent_to_log_in(
    client: FlaskClient, admin_user: User, member: User, member_form: Form
) -> None:
    for page in get_pages(member, member_form):
        response = client.get(page)
        assert response.status_code == 302, page
        assert response.headers["Location"].startswith("/login?next="), page
    token = csrf_token(client, "/login")
    for action, data in post_actions(member, member_form):
        response = client.post(action, data={"csrf_token": token, **data})
        assert response.status_code == 302, action
        assert response.headers["Location"].startswith("/login?next="), action
    assert user_row(MEMBER).role.name == Role.MEMBER and not user_row(MEMBER).disabled


def test_for_a_member_the_admin_pages_do_not_exist(
    as_member: FlaskClient, member: User, member_form: Form
) -> None:
    for page in get_pages(member, member_form):
        response = as_member.get(page)
        assert response.status_code == 404, page
        assert "There is nothing at this address." in text(response)
    token = csrf_token(as_member, "/forms")
    for action, data in post_actions(member, member_form):
        assert as_member.post(action, data={"csrf_token": token, **data}).status_code == 404, action
    assert user_row(MEMBER).role.name == Role.MEMBER
    assert db.session.scalar(select(func.count()).select_from(User)) == 2


def test_an_admin_sees_every_admin_page(
    as_admin: FlaskClient, member: User, member_form: Form
) -> None:
    for page in get_pages(member, member_form):
        assert as_admin.get(page).status_code == 200, page


def test_the_nav_links_to_admin_for_admins_only(
    client: FlaskClient, auth: AuthActions, admin_user: User, member: User
) -> None:
    auth.login(MEMBER)
    assert 'href="/admin"' not in text(client.get("/forms"))
    auth.logout()
    auth.login(ADMIN)
    assert 'href="/admin"' in text(client.get("/forms"))


def test_every_admin_action_without_its_csrf_token_is_refused(
    as_admin: FlaskClient, member: User, member_form: Form
) -> None:
    for action, data in post_actions(member, member_form):
        response = as_admin.post(action, data=data)
        assert response.status_code == 400, action
        assert "CSRF" in text(response), action
    assert user_row(MEMBER).role.name == Role.MEMBER and not user_row(MEMBER).disabled
    assert db.session.scalar(select(func.count()).select_from(User)) == 2
    assert db.session.get(Form, member_form.id).enabled  # type: ignore[union-attr]


# -- status: workers and outbox ----------------------------------------------------------------
def test_status_warns_plainly_when_no_worker_is_running(as_admin: FlaskClient) -> None:
    page = visible(text(as_admin.get("/admin")))

    assert "No delivery worker is running." in page
    assert "wait in the outbox until one starts" in page
    assert "No worker has ever registered." in page


def test_status_shows_a_beating_worker_alive_and_no_warning(as_admin: FlaskClient) -> None:
    worker = WorkerIdentity(host="mailer-1", pid=4242)
    record_beat(db.session(), worker, utcnow())
    db.session.commit()

    page = visible(text(as_admin.get("/admin")))

    assert "No delivery worker is running." not in page
    assert "1 delivery worker alive." in page
    assert f"{worker.id} mailer-1 4242" in page
    assert "alive" in page.split(worker.id)[1]


def test_a_worker_that_stopped_beating_is_not_taken_for_alive(as_admin: FlaskClient) -> None:
    worker = WorkerIdentity(host="mailer-1", pid=4242, started_at=utcnow() - timedelta(hours=1))
    record_beat(db.session(), worker, utcnow() - timedelta(minutes=10))
    db.session.commit()

    page = visible(text(as_admin.get("/admin")))

    assert "No delivery worker is running." in page
    assert "stopped beating" in page


def stat(page: str, name: str) -> str:
    found = re.search(rf"<dt>{re.escape(name)}</dt><dd>(.*?)</dd>", page)
    assert found, name
    return visible(found.group(1))


def test_status_counts_the_outbox_by_state_with_the_oldest_due_age(
    as_admin: FlaskClient, member_form: Form
) -> None:
    submission = make_submission(db.session, member_form)
    now = utcnow()
    make_delivery(db.session, submission, next_attempt_at=now - timedelta(minutes=10))
    make_delivery(db.session, submission)
    make_delivery(
        db.session,
        submission,
        status=DeliveryStatus.PENDING,
        next_attempt_at=now + timedelta(hours=1),
    )
    make_delivery(
        db.session, submission, status=DeliveryStatus.FAILED, attempts=2, last_error="SMTP 451"
    )
    make_delivery(db.session, submission, status=DeliveryStatus.DEAD, attempts=8)
    make_delivery(db.session, submission, status=DeliveryStatus.SENT, sent_at=now)

    page = text(as_admin.get("/admin"))

    assert stat(page, "Pending") == "3"
    assert stat(page, "Due now") == "3"  # two pending and the failed one
    assert stat(page, "Oldest due") == "waiting 10 min"
    assert stat(page, "Failed, to be retried") == "1"
    assert stat(page, "Dead, given up") == "1"
    assert stat(page, "Sent") == "1"
    assert stat(page, "Sending") == "0"
    # The failed and dead counts lead to the submissions they belong to.
    assert 'href="/submissions?delivery=failed"' in page
    assert 'href="/submissions?delivery=dead"' in page


def test_an_empty_outbox_has_nothing_waiting(as_admin: FlaskClient) -> None:
    page = text(as_admin.get("/admin"))
    assert stat(page, "Pending") == "0"
    assert stat(page, "Oldest due") == "none"


# -- status: the mail backend and its check --------------------------------------------------
def check(client: FlaskClient) -> str:
    response = post_form(client, "/admin", action="/admin/check-mail")
    assert response.status_code == 200
    return visible(text(response))


def test_the_console_backend_checks_ok(as_admin: FlaskClient) -> None:
    assert "Backend: console, standard output of the worker." in visible(
        text(as_admin.get("/admin"))
    )
    assert "OK: Messages are printed to the standard output of the worker" in check(as_admin)


@pytest.fixture
def smtp_app(smtp_config: dict[str, object], smtp_server: MailServer) -> MailServer:
    """The app's mail goes to a real SMTP server (request before `app`)."""
    return smtp_server


def test_the_smtp_check_connects_to_the_real_server_and_sends_nothing(
    smtp_app: MailServer, as_admin: FlaskClient
) -> None:
    port = smtp_app.port
    assert f"Backend: smtp, 127.0.0.1:{port}, no login." in visible(text(as_admin.get("/admin")))

    page = check(as_admin)

    assert (
        f"OK: SMTP 127.0.0.1:{port} answered EHLO and NOOP (no TLS, no login configured)." in page
    )
    assert smtp_app.received == []


@pytest.fixture
def nothing_listens(app_config: dict[str, object]) -> int:
    port = free_port()
    point_app_at(app_config, port)
    return port


def test_the_smtp_check_shows_why_it_cannot_connect(
    nothing_listens: int, as_admin: FlaskClient
) -> None:
    page = check(as_admin)

    assert (
        f"Check failed: cannot connect to SMTP 127.0.0.1:{nothing_listens}: "
        "[Errno 111] Connection refused" in page
    )
    assert "No delivery worker is running." in page  # the rest of the status is there too


@pytest.fixture
def silent_server(app_config: dict[str, object]) -> Iterator[int]:
    """A port that accepts connections and never says a word (a mail server that hangs)."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        point_app_at(app_config, port)
        app_config["mail_timeout"] = 30.0
        yield port


def test_the_check_gives_up_on_a_silent_server_long_before_the_send_timeout(
    silent_server: int, as_admin: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_views, "CHECK_TIMEOUT_SECONDS", 0.5)
    started = time.monotonic()

    page = check(as_admin)

    assert time.monotonic() - started < 5
    assert (
        f"Check failed: cannot connect to SMTP 127.0.0.1:{silent_server}: "
        "Connection unexpectedly closed: timed out" in page
    )


# -- users ---------------------------------------------------------------------------------------
def test_users_lists_everyone_with_role_state_last_login_and_forms(
    as_admin: FlaskClient, member_form: Form
) -> None:
    make_user(db.session, "invited@example.com", admin=False, password=None, confirmed=False)
    db.session.commit()

    page = visible(text(as_admin.get("/admin/users")))

    rows = {
        email: page.split(email, 1)[1][:120] for email in (ADMIN, MEMBER, "invited@example.com")
    }
    assert rows[ADMIN].startswith(" (you) admin ")
    assert "active" in rows[ADMIN] and "never" not in rows[ADMIN].split("active")[1][:30]
    assert rows[MEMBER].startswith(" member ")
    assert " active never 1 " in rows[MEMBER]  # never logged in, one form
    assert rows["invited@example.com"].startswith(" member not yet active never 0 ")


def test_an_admin_makes_a_member_an_admin_and_back(as_admin: FlaskClient, member: User) -> None:
    response = post_form(
        as_admin, "/admin/users", {"role": "admin"}, action=f"/admin/users/{member.id}/role"
    )

    assert (response.status_code, response.headers["Location"]) == (303, "/admin/users")
    assert user_row(MEMBER).is_admin
    assert f"{MEMBER} is now an admin." in text(as_admin.get("/admin/users"))

    post_form(as_admin, "/admin/users", {"role": "member"}, action=f"/admin/users/{member.id}/role")
    assert not user_row(MEMBER).is_admin


def test_a_role_other_than_admin_or_member_is_refused(as_admin: FlaskClient, member: User) -> None:
    response = post_form(
        as_admin, "/admin/users", {"role": "owner"}, action=f"/admin/users/{member.id}/role"
    )

    assert response.status_code == 400
    assert "Choose admin or member." in text(response)
    assert user_row(MEMBER).role.name == Role.MEMBER


def test_an_unknown_user_is_404(as_admin: FlaskClient) -> None:
    assert as_admin.get("/admin/users/999/delete").status_code == 404
    response = post_form(as_admin, "/admin/users", action="/admin/users/999/disable")
    assert response.status_code == 404
    assert "There is no such user." in text(response)


def test_the_last_admin_cannot_demote_disable_or_delete_themselves(
    as_admin: FlaskClient, admin_user: User
) -> None:
    me = admin_user.id
    for action, data in [
        (f"/admin/users/{me}/role", {"role": "member"}),
        (f"/admin/users/{me}/disable", {}),
        (f"/admin/users/{me}/delete", {}),
    ]:
        response = post_form(as_admin, "/admin/users", data, action=action)
        assert response.status_code == 409, action
        assert f"{ADMIN} is the only admin and cannot be" in text(response)
        assert "make another user an admin first." in text(response)

    still = user_row(ADMIN)
    assert still.is_admin and not still.disabled
    assert as_admin.get("/admin").status_code == 200


def test_with_another_admin_an_admin_may_step_down(
    as_admin: FlaskClient, admin_user: User, member: User
) -> None:
    post_form(as_admin, "/admin/users", {"role": "admin"}, action=f"/admin/users/{member.id}/role")

    response = post_form(
        as_admin, "/admin/users", {"role": "member"}, action=f"/admin/users/{admin_user.id}/role"
    )

    assert response.status_code == 303
    assert not user_row(ADMIN).is_admin
    assert as_admin.get("/admin").status_code == 404  # no longer an admin's page


def test_a_disabled_admin_does_not_count_as_the_admin_that_remains(
    as_admin: FlaskClient, admin_user: User
) -> None:
    other = make_user(db.session, "other-admin@example.com", admin=True)
    other.disabled = True
    db.session.commit()

    response = post_form(as_admin, "/admin/users", action=f"/admin/users/{admin_user.id}/disable")

    assert response.status_code == 409
    assert not user_row(ADMIN).disabled


@pytest.fixture
def member_client(app: Flask, member: User) -> FlaskClient:
    """A second browser, signed in as the member."""
    other = app.test_client()
    AuthActions(other).login(MEMBER)
    assert other.get("/forms").status_code == 200
    return other


def test_disabling_a_user_ends_their_sessions_and_keeps_them_out(
    as_admin: FlaskClient, member: User, member_client: FlaskClient
) -> None:
    response = post_form(as_admin, "/admin/users", action=f"/admin/users/{member.id}/disable")

    assert response.status_code == 303
    assert user_row(MEMBER).disabled
    page = visible(text(as_admin.get("/admin/users")))
    assert f"{MEMBER} is disabled: they cannot log in, and their sessions have ended." in page
    # The member's open session is over: their next page asks them to log in.
    after = member_client.get("/forms")
    assert after.status_code == 302 and after.headers["Location"].startswith("/login")
    refused = post_form(
        member_client, "/login", {"email": MEMBER, "password": "correct horse battery staple"}
    )
    assert refused.status_code == 400


def test_enabling_a_user_lets_them_log_in_again_but_not_revive_old_sessions(
    as_admin: FlaskClient, member: User, member_client: FlaskClient
) -> None:
    post_form(as_admin, "/admin/users", action=f"/admin/users/{member.id}/disable")
    response = post_form(as_admin, "/admin/users", action=f"/admin/users/{member.id}/enable")

    assert response.status_code == 303
    assert not user_row(MEMBER).disabled
    assert member_client.get("/forms").status_code == 302  # the old session stays ended
    AuthActions(member_client).login(MEMBER)
    assert member_client.get("/forms").status_code == 200


def test_deleting_a_user_asks_first_and_says_what_goes_with_them(
    as_admin: FlaskClient, member: User, member_form: Form
) -> None:
    make_submission(db.session, member_form)
    make_submission(db.session, member_form)

    page = visible(text(as_admin.get(f"/admin/users/{member.id}/delete")))

    assert f"Delete {MEMBER}?" in page
    assert "also deletes 1 form and the 2 submissions they hold" in page
    assert "This cannot be undone." in page
    assert user_row(MEMBER)  # nothing deleted by looking


def test_deleting_a_user_deletes_their_forms_and_submissions(
    as_admin: FlaskClient, client: FlaskClient, admin_user: User, member: User, member_form: Form
) -> None:
    make_delivery(db.session, make_submission(db.session, member_form))
    other = make_form(db.session, name="Admin form", owner=admin_user)  # it stays
    make_submission(db.session, other)

    response = post_form(as_admin, f"/admin/users/{member.id}/delete")

    assert (response.status_code, response.headers["Location"]) == (303, "/admin/users")
    assert f"Deleted {MEMBER} with 1 form and 1 submission." in text(as_admin.get("/admin/users"))
    db.session.rollback()
    assert db.session.scalars(select(User.email)).all() == [ADMIN]
    assert db.session.scalars(select(Form.name)).all() == ["Admin form"]
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 1
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert client.post(f"/f/{member_form.key}", data={"message": "hi"}).status_code == 404


def test_deleting_an_invited_user_withdraws_the_invitation_not_yet_sent(
    as_admin: FlaskClient,
) -> None:
    post_form(as_admin, "/admin/users", {"email": "typo@example.com"}, action="/admin/users/invite")
    invited = user_row("typo@example.com")
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 1

    post_form(as_admin, f"/admin/users/{invited.id}/delete")

    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_an_admin_may_delete_another_admin(as_admin: FlaskClient) -> None:
    other = make_user(db.session, "other-admin@example.com", admin=True)
    db.session.commit()

    response = post_form(as_admin, f"/admin/users/{other.id}/delete")

    assert response.status_code == 303
    db.session.rollback()
    assert db.session.get(User, other.id) is None


# -- invitations -------------------------------------------------------------------------------
def invite(client: FlaskClient, email: str, **extra: str) -> object:
    return post_form(
        client, "/admin/users", {"email": email, **extra}, action="/admin/users/invite"
    )


def test_an_admin_invites_someone_by_email(as_admin: FlaskClient) -> None:
    response = invite(as_admin, "New.Person@Example.com")

    assert (response.status_code, response.headers["Location"]) == (303, "/admin/users")  # type: ignore[attr-defined]
    invited = user_row("new.person@example.com")
    assert invited.role.name == Role.MEMBER and invited.password_hash is None
    mail = db.session.scalars(select(Delivery)).one()
    assert mail.target == "new.person@example.com"
    assert (
        mail.message is not None and mail.message["subject"] == f"{ADMIN} invites you to formrelay"
    )
    page = visible(text(as_admin.get("/admin/users")))
    assert "Invited new.person@example.com" in page


def test_an_invitation_can_make_an_admin(as_admin: FlaskClient) -> None:
    invite(as_admin, "second-admin@example.com", admin="y")
    assert user_row("second-admin@example.com").is_admin


@pytest.mark.parametrize(
    ("email", "status", "message"),
    [
        ("", 400, "This field is required."),
        ("not an address", 400, "&#39;not an address&#39; is not a valid e-mail address."),
        (MEMBER, 409, f"A user with e-mail {MEMBER} exists already."),
    ],
)
def test_an_invitation_to_a_bad_or_taken_address_is_refused_saying_why(
    as_admin: FlaskClient, email: str, status: int, message: str
) -> None:
    response = invite(as_admin, email)

    assert response.status_code == status  # type: ignore[attr-defined]
    assert message in text(response)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(User)) == 2
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0


# -- every form ----------------------------------------------------------------------------------
def test_forms_lists_every_form_with_owner_and_counts(
    as_admin: FlaskClient, admin_user: User, member_form: Form
) -> None:
    make_submission(db.session, member_form)
    make_submission(db.session, member_form, spam=True)
    own = make_form(db.session, name="Admin form", owner=admin_user)

    page = visible(text(as_admin.get("/admin/forms")))

    assert f"Member contact {member_form.key} {MEMBER} 2 1 " in page
    assert f"Admin form {own.key} {ADMIN} 0 0 never enabled" in page


def test_an_admin_disables_and_enables_anyones_form(
    as_admin: FlaskClient, client: FlaskClient, member_form: Form
) -> None:
    response = post_form(as_admin, "/admin/forms", action=f"/admin/forms/{member_form.key}/disable")

    assert (response.status_code, response.headers["Location"]) == (303, "/admin/forms")
    assert f"Member contact ({member_form.key}) is disabled" in text(as_admin.get("/admin/forms"))
    refused = client.post(
        f"/f/{member_form.key}", data={"message": "hi"}, headers={"Accept": "application/json"}
    )
    assert refused.status_code == 403

    post_form(as_admin, "/admin/forms", action=f"/admin/forms/{member_form.key}/enable")
    db.session.rollback()
    assert db.session.get(Form, member_form.id).enabled  # type: ignore[union-attr]


def test_an_unknown_form_key_is_404(as_admin: FlaskClient) -> None:
    assert (
        post_form(as_admin, "/admin/forms", action="/admin/forms/nope/disable").status_code == 404
    )


# -- error pages in the dashboard's layout ---------------------------------------------------
def test_a_signed_in_users_404_is_in_the_dashboard_layout(as_member: FlaskClient) -> None:
    response = as_member.get("/admin")

    assert response.status_code == 404
    page = text(response)
    assert '<header class="topbar">' in page
    assert "<h1>Not found</h1>" in page
    assert 'href="/forms">Your forms</a>' in page


def test_a_public_error_page_stays_plain_for_a_signed_in_user(as_member: FlaskClient) -> None:
    response = as_member.post("/f/nope", data={"message": "hi"}, headers={"Accept": "text/html"})

    assert response.status_code == 404
    assert '<header class="topbar">' not in text(response)
    assert '<body class="plain">' in text(response)


def test_a_signed_out_visitors_404_stays_plain(client: FlaskClient) -> None:
    response = client.get("/nowhere")
    assert '<header class="topbar">' not in text(response)
    assert "Your forms" not in text(response)


@pytest.fixture
def failing_page(app: Flask) -> Iterator[str]:
    """A dashboard page (test-only) whose view fails unexpectedly."""

    def broken() -> str:
        raise RuntimeError("boom")

    app.add_url_rule("/broken", view_func=broken)
    yield "/broken"


def test_an_unexpected_failure_is_a_friendly_500_in_the_dashboard_layout(
    failing_page: str, as_member: FlaskClient
) -> None:
    response = as_member.get(failing_page)

    assert response.status_code == 500
    page = visible(text(response))
    assert "Something went wrong" in page
    assert "trying again in a moment often works" in page
    assert "boom" not in page
    assert '<header class="topbar">' in text(response)
