"""The per-day rollup (submission_counts) stays exact whatever changes the submissions:
ingest, import, delete one or many, empty spam, spam / not spam, a form's deletion."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select, text

from formrelay.cli import cli
from formrelay.extensions import db
from formrelay.models import Form, Submission, SubmissionCount, User, utcnow
from formrelay.services import stats

from ..auth import AuthActions, csrf_token, post_form
from ..factories import make_form, make_submission, make_user

ANN = "ann@example.com"
Counts = dict[tuple[date, bool], int]


@pytest.fixture
def ann(app: Flask) -> User:
    user = make_user(db.session, ANN, admin=False)
    db.session.commit()
    return user


@pytest.fixture
def ann_form(ann: User) -> Form:
    return make_form(db.session, owner=ann, name="Contact", recipients=[ANN])


def rollup(form_id: int) -> Counts:
    """What the rollup holds for a form: (UTC day, spam) -> count, days at zero left out."""
    db.session.rollback()
    rows = db.session.execute(
        select(SubmissionCount.day, SubmissionCount.is_spam, SubmissionCount.n).where(
            SubmissionCount.form_id == form_id, SubmissionCount.n != 0
        )
    )
    return {(day, spam): n for day, spam, n in rows}


def counted(form_id: int) -> Counts:
    """The same figures counted from the submissions themselves, day by UTC day."""
    db.session.rollback()
    found: Counts = {}
    for created_at, spam in db.session.execute(
        select(Submission.created_at, Submission.is_spam).where(Submission.form_id == form_id)
    ):
        key = (created_at.astimezone(UTC).date(), spam)
        found[key] = found.get(key, 0) + 1
    return found


def exact(form_id: int) -> Counts:
    """The rollup, once checked against a count of the rows."""
    held = rollup(form_id)
    assert held == counted(form_id)
    return held


def today() -> date:
    return utcnow().date()


def test_submissions_sent_to_the_endpoint_are_counted_inbox_and_spam_apart(
    client: FlaskClient, ann_form: Form
) -> None:
    for data in ({"message": "one"}, {"message": "two"}, {"message": "x", "_gotcha": "bot"}):
        response = client.post(
            f"/f/{ann_form.key}", data=data, headers={"Accept": "application/json"}
        )
        assert response.status_code == 200
    assert exact(ann_form.id) == {(today(), False): 2, (today(), True): 1}
    figures = stats.form_stats(db.session(), [ann_form.id])[ann_form.id]
    assert (figures.total, figures.recent, figures.daily[-1]) == (2, 2, 2)


def test_days_are_utc_days_whatever_the_zone_written_or_the_sessions_zone(
    app: Flask, ann_form: Form
) -> None:
    new_york = ZoneInfo("America/New_York")
    if db.engine.dialect.name == "postgresql":
        # A connection in another zone must not move the day boundaries.
        db.session.execute(text("SET TIME ZONE 'America/New_York'"))
    # 23:30 in New York on 30 November is 04:30 UTC on 1 December.
    make_submission(
        db.session, ann_form, created_at=datetime(2026, 11, 30, 23, 30, tzinfo=new_york)
    )
    make_submission(db.session, ann_form, created_at=datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    make_submission(db.session, ann_form, created_at=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    assert exact(ann_form.id) == {(date(2026, 12, 1), False): 2, (date(2026, 11, 30), False): 1}


def test_formrelay_import_counts_each_submission_on_its_own_utc_day(
    app: Flask,
    runner: FlaskCliRunner,
    monkeypatch: pytest.MonkeyPatch,
    ann_form: Form,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    first = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)
    lines = ["when,message"] + [
        f"{(first + timedelta(hours=7 * n)).strftime('%Y-%m-%d %H:%M')},old {n}" for n in range(10)
    ]
    path = tmp_path / "history.csv"
    path.write_text("\n".join(lines) + "\n")
    info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
    result = runner.invoke(
        cli, ["import", "--form", ann_form.key, str(path), "--time-column", "when"], obj=info
    )
    assert result.exit_code == 0, result.output
    assert exact(ann_form.id) == {
        (date(2024, 3, 9), False): 2,
        (date(2024, 3, 10), False): 4,
        (date(2024, 3, 11), False): 3,
        (date(2024, 3, 12), False): 1,
    }
    assert stats.form_stats(db.session(), [ann_form.id])[ann_form.id].total == 10


def test_deleting_one_a_selection_or_the_spam_folder_uncounts_exactly_those(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    yesterday = utcnow() - timedelta(days=1)
    one = make_submission(db.session, ann_form)
    selected = [make_submission(db.session, ann_form, created_at=yesterday).id for _ in range(3)]
    kept = make_submission(db.session, ann_form, created_at=yesterday)
    for _ in range(2):
        make_submission(db.session, ann_form, spam=True)
    assert exact(ann_form.id) == {
        (today(), False): 1,
        (yesterday.date(), False): 4,
        (today(), True): 2,
    }
    auth.login(ANN)

    assert post_form(client, f"/submissions/{one.id}/delete").status_code == 303
    assert exact(ann_form.id) == {(yesterday.date(), False): 4, (today(), True): 2}

    token = csrf_token(client, "/submissions")
    response = client.post(
        "/submissions/delete", data={"csrf_token": token, "id": selected, "confirmed": "1"}
    )
    assert response.status_code == 303
    assert exact(ann_form.id) == {(yesterday.date(), False): 1, (today(), True): 2}

    assert post_form(client, f"/forms/{ann_form.key}/spam/empty").status_code == 303
    assert exact(ann_form.id) == {(yesterday.date(), False): 1}
    assert kept.id in db.session.scalars(select(Submission.id))


def test_spam_and_not_spam_move_a_submission_between_the_counts(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    old = utcnow() - timedelta(days=3)
    submission = make_submission(db.session, ann_form, created_at=old)
    make_submission(db.session, ann_form, created_at=old)
    auth.login(ANN)
    detail = f"/submissions/{submission.id}"

    assert post_form(client, detail, action=f"{detail}/spam").status_code == 303
    assert exact(ann_form.id) == {(old.date(), False): 1, (old.date(), True): 1}
    assert stats.form_stats(db.session(), [ann_form.id])[ann_form.id].total == 1

    assert post_form(client, detail, action=f"{detail}/not-spam").status_code == 303
    assert exact(ann_form.id) == {(old.date(), False): 2}


def test_an_update_that_moves_nothing_changes_no_count(app: Flask, ann_form: Form) -> None:
    submission = make_submission(db.session, ann_form, spam=True)
    submission.spam_reason = "looked at again"
    submission.is_spam = True
    db.session.commit()
    assert exact(ann_form.id) == {(today(), True): 1}


def test_deleting_a_form_takes_its_counts_and_leaves_the_others(
    client: FlaskClient, auth: AuthActions, ann: User, ann_form: Form
) -> None:
    other = make_form(db.session, owner=ann, name="Other")
    for form in (ann_form, ann_form, other):
        make_submission(db.session, form)
    make_submission(db.session, ann_form, spam=True)
    ann_form_id = ann_form.id
    auth.login(ANN)
    response = post_form(client, f"/forms/{ann_form.key}/delete")
    assert response.status_code == 302
    db.session.rollback()
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(SubmissionCount)
            .where(SubmissionCount.form_id == ann_form_id)
        )
        == 0
    )
    assert exact(other.id) == {(today(), False): 1}


def test_the_forms_list_shows_the_rollups_figures(
    client: FlaskClient, auth: AuthActions, ann_form: Form
) -> None:
    for days_ago in (0, 0, 1, 45):
        make_submission(db.session, ann_form, created_at=utcnow() - timedelta(days=days_ago))
    auth.login(ANN)
    figures = stats.form_stats(db.session(), [ann_form.id])[ann_form.id]
    assert (figures.total, figures.recent, figures.daily[-2:]) == (4, 3, [1, 2])
    assert client.get("/forms").status_code == 200
