"""The field names each form has received (form_fields): kept as submissions arrive, by
ingest, import and the migration's backfill, and read as the CSV export's columns."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from formrelay.cli import cli
from formrelay.extensions import db
from formrelay.models import Form, FormField, Submission, User
from formrelay.services import exports, field_names, inbox, search
from formrelay.services.inbox import SubmissionFilter

from ..factories import make_form, make_submission, make_user


@pytest.fixture
def ann(app: Flask) -> User:
    user = make_user(db.session, "ann@example.com", admin=False)
    db.session.commit()
    return user


def names(form: Form) -> list[str]:
    db.session.rollback()
    return field_names.names(db.session(), field_names.listed([form.id]))


def header(actor: User | None, f: SubmissionFilter) -> list[str]:
    with exports.reading(db.engine) as session:
        data = b"".join(exports.export_chunks(session, exports.export_query(actor, f), "csv"))
    return next(csv.reader(io.StringIO(data.decode(), newline="")))


def post(client: FlaskClient, form: Form, data: dict[str, str]) -> None:
    response = client.post(f"/f/{form.key}", data=data, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.get_json()


def test_names_sent_to_the_endpoint_are_kept_in_the_order_they_first_arrived(
    client: FlaskClient, ann: User
) -> None:
    form = make_form(db.session, owner=ann)
    other = make_form(db.session, owner=ann, name="Other")
    post(client, form, {"name": "Ann", "email": "ann@example.org", "_gotcha": ""})
    post(client, form, {"email": "bo@example.org", "phone": "123", "name": "Bo"})
    post(client, other, {"topic": "x"})
    # Special fields (_gotcha) are not data; a name is kept once, where it first came.
    assert names(form) == ["name", "email", "phone"]
    assert names(other) == ["topic"]


def test_a_name_sent_twice_in_one_submission_is_one_column(app: Flask) -> None:
    form = make_form(db.session)
    make_submission(db.session, form, fields=[("colour", "red"), ("size", "L"), ("colour", "b")])
    assert names(form) == ["colour", "size"]


def test_formrelay_import_keeps_the_names_of_what_it_imports(
    app: Flask, runner: FlaskCliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    form = make_form(db.session)
    path = tmp_path / "old.csv"
    path.write_text("when,company,message\n2024-03-09 12:00,ACME,hello\n")
    info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
    result = runner.invoke(
        cli, ["import", "--form", form.key, str(path), "--time-column", "when"], obj=info
    )
    assert result.exit_code == 0, result.output
    assert names(form) == ["company", "message"]


def test_the_migration_fills_in_the_names_of_submissions_stored_before_it(app: Flask) -> None:
    from flask_migrate import downgrade, upgrade

    form_id = make_form(db.session).id
    db.session.remove()
    downgrade(revision=field_names_parent())
    with db.engine.begin() as conn:
        conn.execute(
            Submission.__table__.insert(),
            [
                {
                    "form_id": form_id,
                    "fields": fields,
                    "created_at": datetime(2026, 1, 1, tzinfo=UTC),
                    "cc": [],
                }
                for fields in (
                    [["name", "Ann"], ["message", "first"]],
                    [["email", "bo@example.org"], ["name", "Bo"], ["email", "again"]],
                )
            ],
        )
    upgrade()
    form = db.session.get(Form, form_id)
    assert form is not None
    assert names(form) == ["name", "message", "email"]


def field_names_parent() -> str:
    """The revision before the one that made form_fields."""
    from alembic.script import ScriptDirectory

    from formrelay import MIGRATIONS_DIR

    script = ScriptDirectory(MIGRATIONS_DIR)
    made = next(r for r in script.walk_revisions() if r.path.endswith("_form_fields.py"))
    parent = made.down_revision
    assert isinstance(parent, str)
    return parent


def test_the_export_has_a_column_for_every_name_the_form_received(app: Flask) -> None:
    """A column stays when the submissions that had it are deleted, or filtered out."""
    form = make_form(db.session)
    make_submission(db.session, form, fields={"name": "Ann", "fax": "123"})
    gone = make_submission(db.session, form, fields={"name": "Bo", "pager": "9"})
    make_submission(db.session, form, fields={"name": "Cy", "message": "spam!"}, spam=True)
    inbox.delete_submissions(db.session, _admin(), [gone.id])
    db.session.commit()
    assert header(None, SubmissionFilter(form=form)) == [
        "id",
        "time",
        "name",
        "fax",
        "pager",
        "message",
    ]


def test_the_all_forms_export_of_a_member_names_only_the_fields_of_their_forms(
    app: Flask, ann: User
) -> None:
    mine = make_form(db.session, owner=ann)
    make_submission(db.session, mine, fields={"name": "Ann"})
    theirs = make_form(db.session, owner=make_user(db.session, "bob@example.com", admin=False))
    make_submission(db.session, theirs, fields={"secret_project": "x"})
    db.session.commit()
    assert header(ann, SubmissionFilter()) == ["id", "time", "name"]
    assert header(None, SubmissionFilter()) == ["id", "time", "name", "secret_project"]


def test_deleting_a_form_deletes_its_names(app: Flask) -> None:
    from formrelay.services import forms

    form = make_form(db.session)
    make_submission(db.session, form, fields={"name": "Ann"})
    form_id = form.id
    forms.delete_form(db.session, form)
    db.session.commit()
    assert field_names.names(db.session(), field_names.listed([form_id])) == []


def _admin() -> User:
    user = make_user(db.session, "root@example.com", admin=True)
    db.session.commit()
    return user


def test_submissions_with_ids_past_two_billion_positions_still_fit(app: Flask) -> None:
    """A position is the id times FIELD_SLOTS: 64-bit arithmetic, on both databases (a
    32-bit product overflowed on PostgreSQL at id 214,749)."""
    form = make_form(db.session)
    with db.engine.begin() as connection:
        search.insert_submissions(
            connection,
            [
                {
                    "id": 3_000_000,
                    "form_id": form.id,
                    "created_at": datetime(2026, 1, 1, tzinfo=UTC),
                    "fields": [["company", "ACME"]],
                    "cc": [],
                    "is_spam": False,
                }
            ],
        )
    assert names(form) == ["company"]
    position = db.session.scalar(select(FormField.position).where(FormField.form_id == form.id))
    assert position == 3_000_000 * field_names.FIELD_SLOTS


def test_names_of_a_transaction_rolled_back_are_added_by_the_next_one(app: Flask) -> None:
    """PostgreSQL remembers names seen committed, to send nothing for known ones: a name
    its own open transaction added, seen again before a rollback, is not among them."""
    form = make_form(db.session)
    row = {
        "form_id": form.id,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "fields": [["vat_number", "GB1"]],
        "cc": [],
        "is_spam": False,
    }
    with db.engine.connect() as connection:
        search.insert_submissions(connection, [row])
        search.insert_submissions(connection, [row])  # an import's second batch
        connection.rollback()
    assert names(form) == []
    with db.engine.begin() as connection:
        search.insert_submissions(connection, [row])
    assert names(form) == ["vat_number"]
    with db.engine.begin() as connection:  # known now: nothing more to add
        search.insert_submissions(connection, [row])
    assert names(form) == ["vat_number"]
