"""Per-form figures for the dashboard: totals, 30 days by UTC day, last submission, health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, text

from formrelay.extensions import db
from formrelay.models import Delivery, DeliveryStatus
from formrelay.services import inbox, outbox, stats

from ..factories import make_delivery, make_form, make_submission, make_user

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
TODAY = NOW.replace(hour=0)


def test_an_idle_form_has_zeros_and_no_last_submission(app: Flask) -> None:
    form = make_form(db.session)
    figures = stats.form_stats(db.session(), [form.id], now=NOW)[form.id]
    assert figures == stats.FormStats(daily=[0] * 30)
    assert figures.last_at is None


def test_submissions_are_counted_by_utc_day_oldest_first(app: Flask) -> None:
    form = make_form(db.session)
    for at in (
        NOW,  # today
        TODAY + timedelta(seconds=1),  # today, just after midnight
        TODAY - timedelta(seconds=1),  # yesterday, just before midnight
        TODAY - timedelta(days=29),  # the first day of the window
        TODAY - timedelta(days=29, seconds=1),  # before the window: in the total only
        TODAY - timedelta(days=400),
    ):
        make_submission(db.session, form, created_at=at)

    figures = stats.form_stats(db.session(), [form.id], now=NOW)[form.id]

    assert figures.total == 6
    assert figures.recent == 4
    assert figures.daily[-1] == 2
    assert figures.daily[-2] == 1
    assert figures.daily[0] == 1
    assert sum(figures.daily) == 4
    assert figures.last_at == NOW


def test_spam_is_not_counted(app: Flask) -> None:
    form = make_form(db.session)
    make_submission(db.session, form, created_at=NOW - timedelta(hours=1))
    make_submission(db.session, form, spam=True, created_at=NOW)

    figures = stats.form_stats(db.session(), [form.id], now=NOW)[form.id]

    assert (figures.total, figures.recent, figures.daily[-1]) == (1, 1, 1)
    assert figures.last_at == NOW - timedelta(hours=1)


def test_failed_and_dead_deliveries_are_counted_per_form(app: Flask) -> None:
    form, other = make_form(db.session), make_form(db.session, name="Other")
    sub = make_submission(db.session, form, created_at=NOW)
    for status in (
        DeliveryStatus.FAILED,
        DeliveryStatus.FAILED,
        DeliveryStatus.DEAD,
        DeliveryStatus.SENT,
        DeliveryStatus.PENDING,
    ):
        make_delivery(db.session, sub, status=status)
    make_delivery(db.session, make_submission(db.session, other), status=DeliveryStatus.DEAD)

    figures = stats.form_stats(db.session(), [form.id, other.id], now=NOW)

    assert (figures[form.id].failed, figures[form.id].dead) == (2, 1)
    assert (figures[other.id].failed, figures[other.id].dead) == (0, 1)


def test_each_form_gets_only_its_own_submissions(app: Flask) -> None:
    owner = make_user(db.session)
    a, b, c = (make_form(db.session, name=n, owner=owner) for n in "abc")
    for _ in range(3):
        make_submission(db.session, a, created_at=NOW)
    make_submission(db.session, b, created_at=NOW - timedelta(days=2))

    figures = stats.form_stats(db.session(), [a.id, b.id, c.id], now=NOW)

    assert [figures[f.id].total for f in (a, b, c)] == [3, 1, 0]
    assert figures[b.id].daily[-3] == 1
    assert stats.form_stats(db.session(), [c.id], now=NOW)[c.id].total == 0


def test_two_queries_answer_for_any_number_of_forms(app: Flask) -> None:
    forms = [make_form(db.session, name=f"Form {n}") for n in range(6)]
    for form in forms:
        make_submission(db.session, form, created_at=NOW)
    ids = [f.id for f in forms]
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        figures = stats.form_stats(db.session(), ids, now=NOW)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)

    assert [figures[i].total for i in ids] == [1] * 6
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2


def test_days_are_utc_days_whatever_the_database_session_zone(app: Flask) -> None:
    form = make_form(db.session)
    late = TODAY - timedelta(minutes=30)  # 23:30 UTC yesterday: already today in Auckland
    make_submission(db.session, form, created_at=late)
    session = db.session()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TIME ZONE 'Pacific/Auckland'"))

    figures = stats.form_stats(session, [form.id], now=NOW)[form.id]

    assert figures.daily[-2:] == [1, 0]
    assert figures.last_at == late


def test_no_forms_means_no_queries(app: Flask) -> None:
    assert stats.form_stats(db.session(), []) == {}


def test_window_starts_at_midnight_utc_29_days_before_today() -> None:
    assert stats.window_start(NOW) == datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("daily", "points"),
    [
        ([0, 0, 0], "0,23 60,23 120,23"),  # idle: along the bottom edge
        ([0, 2, 1], "0,23 60,1 120,12"),  # the busiest day touches the top
        ([5], "0,1"),
        ([], ""),
    ],
)
def test_sparkline_points_scale_to_the_busiest_day(daily: list[int], points: str) -> None:
    assert stats.sparkline_points(daily) == points


def test_every_delivery_made_for_a_submission_carries_its_form(client: FlaskClient) -> None:
    """What the health counts read: set by ingest, by "not spam" and never for account
    mail, which has no form."""
    form = make_form(db.session, recipients=["a@example.com", "b@example.com"])
    response = client.post(
        f"/f/{form.key}", data={"message": "hi"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 200
    held = make_submission(db.session, form, spam=True)
    inbox.mark_spam(db.session, held, False)
    outbox.queue_mail(db.session, "c@example.com", subject="Hello", text="Text")
    db.session.commit()
    rows = db.session.execute(select(Delivery.submission_id, Delivery.form_id)).all()
    assert len(rows) == 5
    assert {form_id for submission_id, form_id in rows if submission_id} == {form.id}
    assert [form_id for submission_id, form_id in rows if not submission_id] == [None]


def test_the_migration_gives_existing_deliveries_their_form(app: Flask) -> None:
    from flask_migrate import downgrade, upgrade

    delivery = make_delivery(db.session, status=DeliveryStatus.FAILED)
    form_id, delivery_id = delivery.submission.form_id, delivery.id
    db.session.remove()
    downgrade(revision="0007")  # before deliveries.form_id
    upgrade()
    assert db.session.get(Delivery, delivery_id).form_id == form_id  # type: ignore[union-attr]
    assert stats.form_stats(db.session(), [form_id])[form_id].failed == 1
