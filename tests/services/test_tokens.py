"""Signed links: each purpose's lifetime, single use, and death on a password change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask

from formrelay.extensions import db
from formrelay.models import utcnow
from formrelay.services import accounts, tokens
from formrelay.settings import get_settings

from ..factories import make_user


@pytest.mark.parametrize(
    ("purpose", "lifetime"),
    [
        (tokens.CONFIRM, timedelta(days=3)),
        (tokens.RESET, timedelta(hours=1)),
        (tokens.SIGN_IN, timedelta(hours=24)),
        (tokens.CHANGE_EMAIL, timedelta(days=1)),
        (tokens.INVITE, timedelta(days=7)),
    ],
)
def test_a_token_works_until_its_lifetime_ends(
    app: Flask, purpose: str, lifetime: timedelta
) -> None:
    user = make_user(db.session)
    settings = get_settings()
    token = tokens.issue(settings, purpose, user)
    now = utcnow()
    assert (
        tokens.check(
            db.session, settings, purpose, token, now=now + lifetime - timedelta(seconds=5)
        ).user
        is user
    )
    with pytest.raises(tokens.TokenExpired):
        tokens.check(
            db.session, settings, purpose, token, now=now + lifetime + timedelta(seconds=5)
        )


def test_a_token_works_once(app: Flask) -> None:
    user = make_user(db.session)
    settings = get_settings()
    token = tokens.issue(settings, tokens.RESET, user)
    tokens.consume(db.session, settings, tokens.RESET, token)
    db.session.commit()
    with pytest.raises(tokens.TokenUsed):
        tokens.consume(db.session, settings, tokens.RESET, token)


def test_a_password_change_kills_every_token_sent_before(app: Flask) -> None:
    user = make_user(db.session)
    settings = get_settings()
    sent = [tokens.issue(settings, purpose, user) for purpose in tokens.LIFETIMES]
    accounts.set_password(db.session, user, "a much better passphrase")
    for purpose, token in zip(tokens.LIFETIMES, sent, strict=True):
        with pytest.raises(tokens.TokenUsed, match="password last changed"):
            tokens.check(db.session, settings, purpose, token)


def altered_signature(token: str) -> str:
    """`token` with its signature's first character changed: the last one's low bits are
    base64 padding, so changing A to B there can decode to the same signature."""
    head, signature = token.rsplit(".", 1)
    return f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


@pytest.mark.parametrize(
    "mangle",
    [
        altered_signature,
        lambda t: "not-a-token",
        lambda t: "",
    ],
)
def test_a_tampered_token_is_invalid(app: Flask, mangle: object) -> None:
    user = make_user(db.session)
    settings = get_settings()
    token = tokens.issue(settings, tokens.CONFIRM, user)
    with pytest.raises(tokens.TokenInvalid):
        tokens.check(db.session, settings, tokens.CONFIRM, mangle(token))  # type: ignore[operator]


def test_a_token_for_one_purpose_is_no_token_for_another(app: Flask) -> None:
    user = make_user(db.session)
    settings = get_settings()
    token = tokens.issue(settings, tokens.CONFIRM, user)
    with pytest.raises(tokens.TokenInvalid):
        tokens.check(db.session, settings, tokens.RESET, token)


def test_invite_user_creates_an_account_without_password_and_mails_a_link(app: Flask) -> None:
    admin = make_user(db.session, "admin@example.com")
    invited = accounts.invite_user(db.session, get_settings(), admin, "New@Example.com")
    assert invited.email == "new@example.com"
    assert invited.password_hash is None and not invited.is_admin
    from sqlalchemy import select

    from formrelay.models import Delivery

    mail = db.session.scalars(select(Delivery).where(Delivery.target == "new@example.com")).one()
    assert mail.message is not None
    assert "http://forms.test/invitation/" in mail.message["text"]
    assert "admin@example.com" in mail.message["subject"]
