"""web.changes.apply: a change is committed, or rolled back with its reason shown."""

from __future__ import annotations

import pytest
from flask import Flask, get_flashed_messages
from flask_wtf import FlaskForm
from wtforms import StringField

from formrelay.extensions import db
from formrelay.models import User
from formrelay.services import accounts
from formrelay.services.errors import Conflict, DomainError, InvalidInput, NotFound
from formrelay.web.changes import apply

from ..factories import make_user


class ZoneInput(FlaskForm):
    timezone = StringField("Time zone")


def zone_of(email: str) -> str:
    """The zone the database holds for `email`, read afresh."""
    db.session.rollback()
    found = accounts.find_user(db.session, email)
    assert found is not None
    return found.timezone


@pytest.fixture
def owner(app: Flask) -> User:
    made = make_user(db.session)
    db.session.commit()
    return made


def move(owner: User, zone: str, *, then_refuse: DomainError | None = None) -> str:
    accounts.set_timezone(db.session(), owner, zone)
    if then_refuse is not None:
        raise then_refuse
    return zone


def test_a_change_is_committed_and_its_value_returned(app: Flask, owner: User) -> None:
    with app.test_request_context(method="POST"):
        entry = ZoneInput(meta={"csrf": False})
        made = apply(lambda: move(owner, "Europe/Paris"), entry)
        assert made and made.value == "Europe/Paris"
        assert entry.form_errors == []
    assert zone_of("owner@example.com") == "Europe/Paris"


def test_a_refused_change_is_rolled_back_and_its_reason_shown_on_the_form(
    app: Flask, owner: User
) -> None:
    with app.test_request_context(method="POST"):
        entry = ZoneInput(meta={"csrf": False})
        refusal = InvalidInput("Not that one.")
        made = apply(lambda: move(owner, "Europe/Paris", then_refuse=refusal), entry)
        assert not made and made.refused is refusal and made.status == 400
        assert entry.form_errors == ["Not that one."]
        with pytest.raises(ValueError):
            made.value  # noqa: B018 - reading it is what is refused
    assert zone_of("owner@example.com") == "UTC"


def test_a_refusal_can_be_shown_on_a_field_or_flashed(app: Flask, owner: User) -> None:
    refusal = Conflict("Taken.")
    with app.test_request_context(method="POST"):
        entry = ZoneInput(meta={"csrf": False})
        on_field = apply(
            lambda: move(owner, "Asia/Tokyo", then_refuse=refusal), entry.timezone, refuse=Conflict
        )
        flashed = apply(
            lambda: move(owner, "Asia/Tokyo", then_refuse=refusal), None, refuse=Conflict
        )
        assert entry.timezone.errors == ["Taken."]
        assert get_flashed_messages(with_categories=True) == [("error", "Taken.")]
        assert on_field.status == flashed.status == 409
    assert zone_of("owner@example.com") == "UTC"


def test_an_error_it_does_not_refuse_is_raised_with_nothing_committed(
    app: Flask, owner: User
) -> None:
    with app.test_request_context(method="POST"):
        entry = ZoneInput(meta={"csrf": False})
        with pytest.raises(NotFound):
            apply(lambda: move(owner, "Asia/Tokyo", then_refuse=NotFound("Gone.")), entry)
        assert entry.form_errors == []
    assert zone_of("owner@example.com") == "UTC"
