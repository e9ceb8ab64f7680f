"""Accounts as an owner meets them: register, confirm, log in, reset, links, the account page."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from email.message import Message
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from formrelay.extensions import db
from formrelay.models import User, utcnow
from formrelay.services import accounts, tokens
from formrelay.settings import get_settings
from formrelay.worker import Worker, make_worker

from ..auth import AuthActions, csrf_token, post_form
from ..conftest import BASE_URL
from ..factories import PASSWORD, make_user
from ..fakes import RecordingBackend
from ..mailserver import MailServer

NEW_PASSWORD = "a much better passphrase"
LINK = re.compile(re.escape(BASE_URL) + r"(/\S+)")


def mail_to(worker: Worker, outbox: RecordingBackend, address: str) -> list[Message]:
    """What the worker delivered to `address`, oldest first."""
    db.session.rollback()  # a snapshot from before the worker wrote could not write next
    worker.drain()
    return [m for m in outbox.sent if m["To"] == address]


def text_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def link_in(message: Message) -> str:
    """The path of the formrelay link a message carries."""
    found = LINK.search(text_of(message))
    assert found, text_of(message)
    return found.group(1)


def user(email: str) -> User:
    db.session.rollback()
    found = accounts.find_user(db.session, email)
    assert found is not None
    return found


@pytest.fixture
def open_registration(app_config: dict[str, object]) -> dict[str, object]:
    app_config["registration"] = "open"
    app_config["admin_email"] = "admin@example.com"
    return app_config


@pytest.fixture
def owner(app: Flask) -> User:
    made = make_user(db.session)
    db.session.commit()
    return made


# -- what a signed-out visitor and a missing CSRF token get --------------------------------------
ACCOUNT_POSTS = [
    "/account/password",
    "/account/email",
    "/account/timezone",
    "/confirm/resend",
    "/logout",
    "/account/logout-everywhere",
]


def test_account_page_asks_a_signed_out_visitor_to_log_in(client: FlaskClient) -> None:
    response = client.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Faccount"


@pytest.mark.parametrize("path", ACCOUNT_POSTS)
def test_account_changes_ask_a_signed_out_visitor_to_log_in(client: FlaskClient, path: str) -> None:
    response = post_form(client, "/login", {}, action=path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ACCOUNT_POSTS)
def test_account_changes_without_their_csrf_token_are_refused(
    client: FlaskClient, auth: AuthActions, owner: User, path: str
) -> None:
    auth.login()
    response = client.post(path, data={"pw-current": PASSWORD, "tz-timezone": "UTC"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/register", "/reset", "/reset/x", "/sign-in/x", "/invitation/x"])
def test_public_account_forms_without_their_csrf_token_are_refused(
    client: FlaskClient, open_registration: dict[str, object], path: str
) -> None:
    response = client.post(path, data={"email": "a@example.com", "password": NEW_PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


# -- registration ------------------------------------------------------------------------------
def test_registration_is_by_invitation_by_default(client: FlaskClient) -> None:
    response = client.get("/register")
    assert response.status_code == 404
    assert "Registration is by invitation" in response.get_data(as_text=True)
    sent = post_form(
        client, "/login", {"email": "a@example.com", "password": NEW_PASSWORD}, action="/register"
    )
    assert sent.status_code == 404
    assert accounts.find_user(db.session, "a@example.com") is None


@pytest.fixture
def closed_registration(app_config: dict[str, object]) -> dict[str, object]:
    app_config["registration"] = "closed"
    return app_config


def test_registration_can_be_closed(
    closed_registration: dict[str, object], client: FlaskClient
) -> None:
    response = client.get("/register")
    assert response.status_code == 404
    assert "Registration is closed" in response.get_data(as_text=True)


def test_register_page_has_the_names_checks_rely_on(
    open_registration: dict[str, object], client: FlaskClient
) -> None:
    page = client.get("/register").get_data(as_text=True)
    assert '<label for="email">Email</label>' in page
    assert '<label for="password">Password</label>' in page
    assert 'value="Create account"' in page


def test_registering_creates_an_unconfirmed_account_and_mails_a_link_and_the_admin(
    open_registration: dict[str, object],
    client: FlaskClient,
    auth: AuthActions,
    worker: Worker,
    outbox: RecordingBackend,
) -> None:
    response = post_form(
        client, "/register", {"email": "Ann@Example.org", "password": NEW_PASSWORD}
    )
    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    assert user("ann@example.org").confirmed_at is None
    (notice,) = mail_to(worker, outbox, "admin@example.com")
    assert "ann@example.org" in notice["Subject"]

    auth.login("ann@example.org", NEW_PASSWORD)
    assert "Confirm your address" in client.get("/forms").get_data(as_text=True)
    (confirmation,) = mail_to(worker, outbox, "ann@example.org")
    followed = client.get(link_in(confirmation))
    assert followed.status_code == 302
    assert user("ann@example.org").confirmed_at is not None
    assert "Confirm your address" not in client.get("/forms").get_data(as_text=True)
    # A confirmation link works once.
    again = client.get(link_in(confirmation))
    assert again.status_code == 410
    assert "used already" in again.get_data(as_text=True)


def test_registering_an_address_that_has_an_account_answers_as_for_a_new_one(
    open_registration: dict[str, object],
    client: FlaskClient,
    owner: User,
    worker: Worker,
    outbox: RecordingBackend,
) -> None:
    def register(email: str) -> tuple[int, str]:
        response = post_form(client, "/register", {"email": email, "password": NEW_PASSWORD})
        return response.status_code, response.get_data(as_text=True).replace(email, "EMAIL")

    assert register("owner@example.com") == register("newcomer@example.com")
    (note,) = mail_to(worker, outbox, "owner@example.com")
    assert "has one already" in text_of(note)
    assert passwords_unchanged(owner)


def passwords_unchanged(owner: User) -> bool:
    from formrelay.services.passwords import verify_password

    return verify_password(user(owner.email).password_hash, PASSWORD)


@pytest.mark.parametrize(
    ("email", "password", "says"),
    [
        ("not-an-address", NEW_PASSWORD, "not a valid e-mail address"),
        ("ann@example.org", "short", "at least 10 characters"),
        ("ann@example.org", "password123", "too common"),
    ],
)
def test_registration_refuses_bad_input_saying_why(
    open_registration: dict[str, object], client: FlaskClient, email: str, password: str, says: str
) -> None:
    response = post_form(client, "/register", {"email": email, "password": password})
    assert response.status_code == 400
    assert says in response.get_data(as_text=True)


def test_resend_mails_a_new_confirmation_link(
    client: FlaskClient, auth: AuthActions, worker: Worker, outbox: RecordingBackend
) -> None:
    make_user(db.session, "ann@example.org", confirmed=False)
    db.session.commit()
    auth.login("ann@example.org")
    response = post_form(client, "/forms", action="/confirm/resend")
    assert response.status_code == 302
    (confirmation,) = mail_to(worker, outbox, "ann@example.org")
    assert client.get(link_in(confirmation)).status_code == 302
    assert user("ann@example.org").confirmed_at is not None


# -- log in ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    ["//evil.com", "/\\evil.com", "https://evil.com", "javascript:alert(1)", "/\t/evil.com"],
)
def test_next_after_log_in_never_leaves_formrelay(
    client: FlaskClient, auth: AuthActions, owner: User, target: str
) -> None:
    response = auth.login(next=target)
    assert response.headers["Location"] == "/forms"


def test_next_after_log_in_keeps_a_path_inside_formrelay(
    client: FlaskClient, auth: AuthActions, owner: User
) -> None:
    assert auth.login(next="/account?tab=1").headers["Location"] == "/account?tab=1"


def test_remember_me_sets_a_lasting_cookie_and_without_it_none(app: Flask, owner: User) -> None:
    remembered, forgotten = app.test_client(), app.test_client()
    AuthActions(remembered).login(remember="y")
    AuthActions(forgotten).login()
    assert remembered.get_cookie("remember_token") is not None
    assert forgotten.get_cookie("remember_token") is None


def test_user_without_a_password_cannot_log_in(client: FlaskClient) -> None:
    make_user(db.session, "you@example.com", password=None)
    db.session.commit()
    response = post_form(client, "/login", {"email": "you@example.com", "password": ""})
    assert response.status_code == 400
    response = post_form(client, "/login", {"email": "you@example.com", "password": "anything!"})
    assert response.status_code == 400


@pytest.fixture(params=[BASE_URL, "https://forms.test"], ids=["http", "https"])
def served_at(request: pytest.FixtureRequest, app_config: dict[str, object]) -> str:
    app_config["base_url"] = request.param
    return str(request.param)


def test_session_cookie_flags(served_at: str, client: FlaskClient, owner: User) -> None:
    secure = served_at.startswith("https://")
    if secure:  # behind a TLS proxy: the browser speaks https
        client.environ_base["wsgi.url_scheme"] = "https"
    response = AuthActions(client).login(remember="y")
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    for name in ("session", "remember_token"):
        flags = cookies[name].lower()
        assert "httponly" in flags and "samesite=lax" in flags
        assert ("; secure" in flags) is secure


def test_failed_log_ins_for_one_account_are_limited(client: FlaskClient, owner: User) -> None:
    statuses = [
        post_form(
            client, "/login", {"email": "owner@example.com", "password": f"wrong-{n}"}
        ).status_code
        for n in range(6)
    ]
    assert statuses == [400] * 5 + [429]
    limited = post_form(client, "/login", {"email": "owner@example.com", "password": PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert "Too many attempts" in limited.get_data(as_text=True)


def test_failed_log_ins_from_one_address_are_limited_across_accounts(
    client: FlaskClient,
) -> None:
    statuses = [
        post_form(
            client, "/login", {"email": f"n{n}@example.com", "password": "wrong-pass"}
        ).status_code
        for n in range(11)
    ]
    assert statuses == [400] * 10 + [429]
    token = csrf_token(client, "/login")
    limited = client.post(
        "/login",
        data={"csrf_token": token, "email": "x@example.com", "password": "p"},
        headers={"Accept": "application/json"},
    )
    assert limited.status_code == 429
    assert limited.json is not None and limited.json["errors"][0]["code"] == "TOO_MANY_REQUESTS"
    assert "Retry-After" in limited.headers


def test_successful_log_ins_do_not_count_against_the_limit(app: Flask, owner: User) -> None:
    for _ in range(7):
        browser = app.test_client()
        AuthActions(browser).login()


# -- forgotten passwords -----------------------------------------------------------------------
def test_reset_answers_the_same_for_an_unknown_address(client: FlaskClient, owner: User) -> None:
    def ask(email: str) -> tuple[int, str]:
        response = post_form(client, "/reset", {"email": email})
        return response.status_code, response.get_data(as_text=True).replace(email, "EMAIL")

    assert ask("owner@example.com") == ask("nobody@example.com")


def test_reset_link_sets_a_new_password_once(
    client: FlaskClient, owner: User, worker: Worker, outbox: RecordingBackend
) -> None:
    post_form(client, "/reset", {"email": "owner@example.com"})
    (mail,) = mail_to(worker, outbox, "owner@example.com")
    path = link_in(mail)
    assert path.startswith("/reset/")
    assert "Choose a new password" in client.get(path).get_data(as_text=True)
    response = post_form(client, path, {"password": NEW_PASSWORD})
    assert response.status_code == 302  # and logged in
    assert client.get("/account").status_code == 200
    AuthActions(client).logout()
    refused = post_form(client, "/login", {"email": "owner@example.com", "password": PASSWORD})
    assert refused.status_code == 400
    AuthActions(client).login(password=NEW_PASSWORD)
    used = client.get(path)
    assert used.status_code == 410


def test_reset_link_expires_after_an_hour(
    client: FlaskClient, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tokens.issue(get_settings(), tokens.RESET, owner)
    later = utcnow() + timedelta(hours=1, minutes=1)
    monkeypatch.setattr(tokens, "utcnow", lambda: later)
    response = client.get(f"/reset/{token}")
    assert response.status_code == 410
    assert "expired" in response.get_data(as_text=True)


def test_a_tampered_link_is_a_friendly_400(client: FlaskClient, owner: User) -> None:
    response = client.get("/reset/not-a-real-token")
    assert response.status_code == 400
    assert "This link is not valid" in response.get_data(as_text=True)
    as_json = client.get("/reset/x", headers={"Accept": "application/json"})
    assert (as_json.status_code, as_json.json) == (
        400,
        {
            "ok": False,
            "error": "This link is not valid: check that it was copied whole.",
            "errors": [
                {
                    "code": "TOKEN_INVALID",
                    "message": "This link is not valid: check that it was copied whole.",
                }
            ],
        },
    )


def test_reset_requests_are_limited_per_account(client: FlaskClient, owner: User) -> None:
    statuses = [
        post_form(client, "/reset", {"email": "owner@example.com"}).status_code for _ in range(6)
    ]
    assert statuses == [200] * 5 + [429]
    assert "Retry-After" in post_form(client, "/reset", {"email": "owner@example.com"}).headers


# -- sign-in links and invitations -------------------------------------------------------------
def test_invitation_link_sets_the_password_confirms_and_signs_in(
    client: FlaskClient, owner: User, worker: Worker, outbox: RecordingBackend
) -> None:
    accounts.invite_user(db.session, get_settings(), owner, "guest@example.org")
    db.session.commit()
    (invitation,) = mail_to(worker, outbox, "guest@example.org")
    path = link_in(invitation)
    page = client.get(path)
    assert page.status_code == 200
    assert "set your password" in page.get_data(as_text=True)
    assert post_form(client, path, {"password": "short"}).status_code == 400
    assert post_form(client, path, {"password": NEW_PASSWORD}).status_code == 302
    assert user("guest@example.org").confirmed_at is not None
    assert client.get("/account").status_code == 200
    assert client.get(path).status_code == 410


# -- the account page --------------------------------------------------------------------------
def test_changing_the_password_ends_other_sessions_and_keeps_this_one(
    app: Flask, owner: User
) -> None:
    here, elsewhere = app.test_client(), app.test_client()
    AuthActions(here).login()
    AuthActions(elsewhere).login(remember="y")
    sent_before = tokens.issue(get_settings(), tokens.RESET, owner)
    response = post_form(
        here,
        "/account",
        {"pw-current": PASSWORD, "pw-password": NEW_PASSWORD},
        action="/account/password",
    )
    assert response.status_code == 302
    assert here.get("/account").status_code == 200
    assert elsewhere.get("/account").status_code == 302
    assert here.get(f"/reset/{sent_before}").status_code == 410


def test_changing_the_password_needs_the_current_one(
    client: FlaskClient, auth: AuthActions, owner: User
) -> None:
    auth.login()
    response = post_form(
        client,
        "/account",
        {"pw-current": "wrong-password", "pw-password": NEW_PASSWORD},
        action="/account/password",
    )
    assert response.status_code == 400
    assert "current password is not right" in response.get_data(as_text=True)


def test_a_new_password_the_policy_refuses_is_shown_and_changes_nothing(
    app: Flask, owner: User
) -> None:
    here, elsewhere = app.test_client(), app.test_client()
    AuthActions(here).login()
    AuthActions(elsewhere).login()
    response = post_form(
        here,
        "/account",
        {"pw-current": PASSWORD, "pw-password": "short"},
        action="/account/password",
    )
    assert response.status_code == 400
    assert "at least" in response.get_data(as_text=True)
    assert here.get("/account").status_code == 200
    assert elsewhere.get("/account").status_code == 200
    AuthActions(app.test_client()).login()  # with the password it had


def test_moving_the_account_to_its_own_address_is_refused_on_the_page(
    client: FlaskClient, auth: AuthActions, owner: User
) -> None:
    auth.login()
    response = post_form(
        client,
        "/account",
        {"em-email": "owner@example.com", "em-password": PASSWORD},
        action="/account/email",
    )
    assert response.status_code == 400
    assert "the address the account has already" in response.get_data(as_text=True)
    assert user("owner@example.com").pending_email is None


def test_changing_the_email_waits_for_the_new_address_to_confirm(
    client: FlaskClient,
    auth: AuthActions,
    owner: User,
    worker: Worker,
    outbox: RecordingBackend,
) -> None:
    auth.login()
    response = post_form(
        client,
        "/account",
        {"em-email": "New@Example.org", "em-password": PASSWORD},
        action="/account/email",
    )
    assert response.status_code == 302
    assert user("owner@example.com").pending_email == "new@example.org"
    (notice,) = mail_to(worker, outbox, "owner@example.com")
    assert "new@example.org" in text_of(notice)
    (confirmation,) = mail_to(worker, outbox, "new@example.org")
    assert client.get(link_in(confirmation)).status_code == 302
    moved = db.session.get(User, owner.id)
    assert moved is not None
    assert (moved.email, moved.pending_email) == ("new@example.org", None)
    auth.logout()
    auth.login("new@example.org")


@pytest.mark.parametrize(
    ("zone", "status"),
    [("Europe/Paris", 302), ("UTC", 302), ("Mars/Olympus", 400), ("../etc", 400)],
)
def test_time_zone_is_an_iana_name(
    client: FlaskClient, auth: AuthActions, owner: User, zone: str, status: int
) -> None:
    auth.login()
    response = post_form(client, "/account", {"tz-timezone": zone}, action="/account/timezone")
    assert response.status_code == status
    if status == 302:
        assert user("owner@example.com").timezone == zone
    else:
        assert "not a time zone name" in response.get_data(as_text=True)


# -- first start and the CLI's links -----------------------------------------------------------
def test_first_start_makes_the_dev_admin_and_a_link_only_while_nobody_can_log_in(
    app: Flask, client: FlaskClient
) -> None:
    make_user(db.session, "you@example.com", admin=False, password=None)  # the demo placeholder
    found = accounts.first_start(db.session, get_settings())
    assert found is not None
    admin, link = found
    assert (admin.email, admin.is_admin) == ("admin@localhost", True)
    db.session.commit()
    path = link.removeprefix(BASE_URL)
    assert post_form(client, path, {"password": NEW_PASSWORD}).status_code == 302
    db.session.rollback()
    assert accounts.first_start(db.session, get_settings()) is None


def test_first_start_names_the_configured_admin(
    open_registration: dict[str, object], client: FlaskClient
) -> None:
    found = accounts.first_start(db.session, get_settings())
    assert found is not None and found[0].email == "admin@example.com"


def test_serve_prints_the_first_start_link(app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    from formrelay.cli.serve import _first_start

    _first_start(get_settings())
    out = capsys.readouterr().out
    assert "admin admin@localhost" in out
    assert out.splitlines()[-1].startswith(f"{BASE_URL}/sign-in/")
    _first_start(get_settings())  # the admin exists but has no password yet: a new link
    assert "/sign-in/" in capsys.readouterr().out


def test_user_login_link_opens_the_set_password_page(
    app: Flask, client: FlaskClient, owner: User, cli_run: Callable[..., tuple[int, str]]
) -> None:
    code, out = cli_run("user", "login-link", "--email", "Owner@Example.com")
    assert code == 0
    path = out.splitlines()[-1].removeprefix(BASE_URL)
    assert path.startswith("/sign-in/")
    assert post_form(client, path, {"password": NEW_PASSWORD}).status_code == 302
    assert client.get("/account").status_code == 200


def test_user_login_link_for_an_unknown_address_fails(
    cli_run: Callable[..., tuple[int, str]],
) -> None:
    code, out = cli_run("user", "login-link", "--email", "nobody@example.org")
    assert code == 1
    assert "No user nobody@example.org" in out


def test_user_create_prints_a_sign_in_link_last(
    client: FlaskClient, cli_run: Callable[..., tuple[int, str]]
) -> None:
    code, out = cli_run("user", "create", "--email", "ann@example.org")
    assert code == 0
    path = out.splitlines()[-1].removeprefix(BASE_URL)
    assert post_form(client, path, {"password": NEW_PASSWORD}).status_code == 302
    created = user("ann@example.org")
    assert created.password_hash is not None and created.confirmed_at is not None


@pytest.fixture
def cli_run(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    from flask.cli import ScriptInfo

    from formrelay.cli import cli

    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    runner = app.test_cli_runner()

    def run(*args: str) -> tuple[int, str]:
        info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
        result = runner.invoke(cli, list(args), obj=info)
        db.session.rollback()
        return result.exit_code, result.output

    return run


def test_first_start_on_a_database_without_tables_says_to_upgrade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from formrelay import create_app
    from formrelay.cli.serve import _first_start

    bare = create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
            "instance_path": tmp_path / "instance",
            "secret_key": "x",
        }
    )
    with bare.app_context():
        _first_start(get_settings())
        db.session.remove()
        db.engine.dispose()
    assert "run `formrelay db upgrade`" in capsys.readouterr().err


def test_register_confirm_and_log_in_with_the_mail_read_from_a_real_smtp_server(
    open_registration: dict[str, object],
    smtp_config: dict[str, object],
    smtp_server: MailServer,
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
) -> None:
    post_form(client, "/register", {"email": "ann@example.org", "password": NEW_PASSWORD})
    make_worker(app).drain()
    received = {r.rcpt_tos[0]: r.message for r in smtp_server.received}
    assert set(received) == {"ann@example.org", "admin@example.com"}
    found = LINK.search(received["ann@example.org"].get_content())
    assert found and found.group(1).startswith("/confirm/")
    db.session.rollback()
    assert client.get(found.group(1)).status_code == 302
    auth.login("ann@example.org", NEW_PASSWORD)
    assert "Confirm your address" not in client.get("/forms").get_data(as_text=True)


def test_moving_to_an_address_that_has_an_account_changes_nothing_and_tells_it(
    client: FlaskClient,
    auth: AuthActions,
    owner: User,
    worker: Worker,
    outbox: RecordingBackend,
) -> None:
    make_user(db.session, "taken@example.org")
    db.session.commit()
    auth.login()
    response = post_form(
        client,
        "/account",
        {"em-email": "taken@example.org", "em-password": PASSWORD},
        action="/account/email",
    )
    assert response.status_code == 302  # the same answer as for a free address
    assert user("owner@example.com").pending_email is None
    (note,) = mail_to(worker, outbox, "taken@example.org")
    assert "has an account already" in text_of(note)


def test_changing_the_email_needs_the_current_password(
    client: FlaskClient, auth: AuthActions, owner: User
) -> None:
    auth.login()
    response = post_form(
        client,
        "/account",
        {"em-email": "new@example.org", "em-password": "wrong-password"},
        action="/account/email",
    )
    assert response.status_code == 400
    assert "current password is not right" in response.get_data(as_text=True)
    assert user("owner@example.com").pending_email is None


def test_a_disabled_user_cannot_log_in_nor_get_a_link(
    client: FlaskClient, owner: User, cli_run: Callable[..., tuple[int, str]]
) -> None:
    owner.disabled = True
    db.session.commit()
    response = post_form(client, "/login", {"email": "owner@example.com", "password": PASSWORD})
    assert response.status_code == 400
    code, out = cli_run("user", "login-link", "--email", "owner@example.com")
    assert code == 1 and "disabled" in out


def test_log_in_page_offers_reset_and_registration_only_when_open(
    app_config: dict[str, object], client: FlaskClient
) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert 'href="/reset"' in page
    assert 'href="/register"' not in page  # invitation only, by default
