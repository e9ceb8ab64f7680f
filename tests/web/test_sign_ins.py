"""Sign-ins: logging out ends this browser's cookies, copies included; other browsers stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from formrelay.extensions import db
from formrelay.models import SignIn, User, utcnow
from formrelay.services import sign_ins, tokens
from formrelay.settings import get_settings
from formrelay.worker import Worker

from ..auth import AuthActions, post_form
from ..factories import PASSWORD, make_user

NEW_PASSWORD = "a much better passphrase"
COOKIES = ("session", "remember_token")


@pytest.fixture
def owner(app: Flask) -> User:
    made = make_user(db.session)
    db.session.commit()
    return made


def browser(app: Flask, remember: bool = True) -> FlaskClient:
    """A new browser, logged in as the owner (with "Remember me" unless told otherwise)."""
    client = app.test_client()
    AuthActions(client).login(**({"remember": "y"} if remember else {}))
    return client


def copy_of(app: Flask, client: FlaskClient, name: str) -> FlaskClient:
    """Another browser holding a copy of one of `client`'s cookies, and nothing else."""
    cookie = client.get_cookie(name)
    assert cookie is not None, name
    thief = app.test_client()
    thief.set_cookie(name, cookie.value)
    return thief


def signed_in(client: FlaskClient) -> bool:
    """Whether `client` opens the dashboard. The test's own reads end first: a request's
    session starts with no transaction open, as in a server."""
    db.session.rollback()
    response = client.get("/forms")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def sign_in_rows(user: User) -> int:
    db.session.rollback()
    return db.session.scalar(
        select(func.count()).select_from(SignIn).where(SignIn.user_id == user.id)
    )


@pytest.mark.parametrize("name", COOKIES)
def test_a_copied_cookie_opens_the_dashboard_only_until_log_out(
    app: Flask, owner: User, name: str
) -> None:
    here = browser(app)
    assert signed_in(copy_of(app, here, name))
    thief = copy_of(app, here, name)
    AuthActions(here).logout()
    assert not signed_in(here)
    assert not signed_in(thief)


def test_log_out_leaves_the_users_other_browsers_signed_in(app: Flask, owner: User) -> None:
    here, there = browser(app), browser(app, remember=False)
    there_copy = copy_of(app, there, "session")
    AuthActions(here).logout()
    assert signed_in(there)
    assert signed_in(there_copy)
    assert sign_in_rows(owner) == 1


FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def test_the_account_page_lists_each_browser_signed_in(app: Flask, owner: User) -> None:
    here = app.test_client()
    here.environ_base["HTTP_USER_AGENT"] = FIREFOX
    AuthActions(here).login(remember="y")
    there = app.test_client()
    there.environ_base["HTTP_USER_AGENT"] = SAFARI
    AuthActions(there).login()
    assert sign_in_rows(owner) == 2
    page = here.get("/account").get_data(as_text=True)
    assert "Firefox on Linux <strong>(This browser)</strong>" in page
    assert "Safari on iOS</td>" in page
    assert "Log out everywhere" in page


@pytest.mark.parametrize(
    ("agent", "shown"),
    [
        (FIREFOX, "Firefox on Linux"),
        (SAFARI, "Safari on iOS"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        ("curl/8.5.0", "curl/8.5.0"),
        ("", "Unknown browser"),
    ],
)
def test_a_sign_in_names_its_browser_briefly(agent: str, shown: str) -> None:
    assert sign_ins.describe_agent(agent) == shown


def log_out_everywhere(client: FlaskClient) -> None:
    response = post_form(client, "/account", action="/account/logout-everywhere")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"


def test_log_out_everywhere_ends_every_browser_and_every_copy(app: Flask, owner: User) -> None:
    here, there = browser(app), browser(app, remember=False)
    copies = [
        copy_of(app, c, name) for c in (here, there) for name in COOKIES if c.get_cookie(name)
    ]
    assert len(copies) == 3
    log_out_everywhere(here)
    assert "You are logged out everywhere" in here.get("/login").get_data(as_text=True)
    for client in (here, there, *copies):
        assert not signed_in(client)
    assert sign_in_rows(owner) == 0


def test_log_out_everywhere_ends_only_the_users_own_sign_ins(app: Flask, owner: User) -> None:
    make_user(db.session, "other@example.com", admin=False)
    db.session.commit()
    owners = browser(app)
    other = app.test_client()
    AuthActions(other).login(email="other@example.com")
    log_out_everywhere(other)
    assert signed_in(owners)
    assert not signed_in(other)


def test_changing_the_password_ends_every_other_sign_in_and_copies_of_this_one(
    app: Flask, owner: User
) -> None:
    here, there = browser(app), browser(app)
    old_copies = [copy_of(app, c, name) for c in (here, there) for name in COOKIES]
    response = post_form(
        here,
        "/account",
        {"pw-current": PASSWORD, "pw-password": NEW_PASSWORD},
        action="/account/password",
    )
    assert response.status_code == 302
    assert signed_in(here)
    assert signed_in(copy_of(app, here, "remember_token"))  # its new cookie
    assert not signed_in(there)
    for client in old_copies:
        assert not signed_in(client)
    assert sign_in_rows(owner) == 1


def test_a_password_reset_ends_every_sign_in(app: Flask, owner: User) -> None:
    there = browser(app)
    there_copy = copy_of(app, there, "remember_token")
    link = app.test_client()
    path = "/reset/" + link_token(owner)
    assert post_form(link, path, {"password": NEW_PASSWORD}).status_code == 302
    assert signed_in(link)
    assert not signed_in(there)
    assert not signed_in(there_copy)
    assert sign_in_rows(owner) == 1


def test_following_a_link_signed_in_as_someone_else_ends_their_sign_in(
    app: Flask, owner: User
) -> None:
    guest = make_user(db.session, "guest@example.org", password=None)
    db.session.commit()
    here = browser(app)
    owners_copy = copy_of(app, here, "remember_token")
    path = "/invitation/" + link_token(guest, "INVITE")
    assert post_form(here, path, {"password": NEW_PASSWORD}).status_code == 302
    assert "guest@example.org" in here.get("/account").get_data(as_text=True)
    assert not signed_in(owners_copy)
    assert sign_in_rows(owner) == 0


def link_token(user: User, purpose: str = "RESET") -> str:
    """The token of a link of this kind (tokens.RESET, tokens.INVITE) for `user`."""
    return tokens.issue(get_settings(), getattr(tokens, purpose), user)


def test_a_sign_in_past_its_expiry_is_refused(
    app: Flask, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    remembered, forgotten = browser(app), browser(app, remember=False)
    after_a_day = utcnow() + sign_ins.IDLE_LIMIT + timedelta(minutes=1)
    monkeypatch.setattr(sign_ins, "utcnow", lambda: after_a_day)
    assert signed_in(remembered)
    assert not signed_in(forgotten)
    after_the_cookie = utcnow() + sign_ins.REMEMBERED_FOR + timedelta(minutes=1)
    monkeypatch.setattr(sign_ins, "utcnow", lambda: after_the_cookie)
    assert not signed_in(copy_of(app, remembered, "remember_token"))


def test_a_request_keeps_a_sign_in_alive_and_last_seen_moves_every_few_minutes(
    app: Flask, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = browser(app, remember=False)
    db.session.rollback()
    (row,) = db.session.scalars(select(SignIn)).all()
    first_seen = row.last_seen_at
    soon = utcnow() + sign_ins.TOUCH_EVERY / 2
    monkeypatch.setattr(sign_ins, "utcnow", lambda: soon)
    assert signed_in(here)
    db.session.refresh(row)
    assert row.last_seen_at == first_seen  # not written on every request
    later = utcnow() + sign_ins.IDLE_LIMIT - timedelta(minutes=1)
    monkeypatch.setattr(sign_ins, "utcnow", lambda: later)
    assert signed_in(here)
    db.session.refresh(row)
    assert row.last_seen_at == later
    assert row.expires_at == later + sign_ins.IDLE_LIMIT
    much_later = later + sign_ins.IDLE_LIMIT - timedelta(minutes=1)
    monkeypatch.setattr(sign_ins, "utcnow", lambda: much_later)
    assert signed_in(here)


def test_the_worker_deletes_expired_sign_ins(
    app: Flask, owner: User, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from formrelay.worker import housekeeping

    browser(app), browser(app, remember=False)
    db.session.rollback()
    later = utcnow() + sign_ins.IDLE_LIMIT + timedelta(minutes=1)
    monkeypatch.setattr(housekeeping, "utcnow", lambda: later)
    done = worker.housekeeping.maybe_run()
    assert done is not None and done.sign_ins == 1
    assert sign_in_rows(owner) == 1
