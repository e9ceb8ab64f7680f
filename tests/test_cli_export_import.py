"""`formrelay export` and `formrelay import`, as an operator runs them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from flask.cli import ScriptInfo
from sqlalchemy import func, select

from formrelay.cli import cli
from formrelay.extensions import db
from formrelay.models import Delivery, Form, Submission
from formrelay.services import inbox

from .factories import make_form, make_submission

DATA = Path(__file__).parent / "data"
Run = Callable[..., Result]


@pytest.fixture
def formrelay(app, runner, monkeypatch) -> Run:
    """`formrelay ARGS...` run in-process against the test app."""
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")

    def invoke(*args: str) -> Result:
        info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
        return runner.invoke(cli, list(args), obj=info)

    return invoke


@pytest.fixture
def form(app) -> Form:
    return make_form(db.session)


def stored(form: Form) -> list[tuple[datetime, list[list[str]], str | None]]:
    """The form's submissions, oldest first: (time, fields, sender's address)."""
    db.session.rollback()
    rows = db.session.scalars(
        select(Submission).where(Submission.form_id == form.id).order_by(Submission.created_at)
    )
    return [(s.created_at, s.fields, s.remote_addr) for s in rows]


def write(tmp_path: Path, content: str | bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# -- export ----------------------------------------------------------------------------------
def test_export_writes_csv_to_standard_output(formrelay: Run, form: Form) -> None:
    submission = make_submission(
        db.session,
        form,
        fields={"name": "Zoë", "message": "=1+1"},
        created_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
    )
    result = formrelay("export", "--form", form.key)
    assert result.exit_code == 0, result.output
    assert list(csv.reader(io.StringIO(result.stdout_bytes.decode(), newline=""))) == [
        ["id", "time", "name", "message"],
        [str(submission.id), "2026-12-01T08:00:00Z", "Zoë", "'=1+1"],
    ]
    assert result.stderr == ""  # not a terminal: no progress bar


def test_export_writes_json_to_a_file(formrelay: Run, form: Form, tmp_path: Path) -> None:
    first = make_submission(db.session, form, fields={"message": "one"})
    second = make_submission(db.session, form, fields={"message": "two"})
    target = tmp_path / "out.json"
    result = formrelay("export", "--form", form.key, "--format", "json", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.output == f"Exported 2 submissions of form {form.key} to {target}.\n"
    records = json.loads(target.read_text())
    assert [r["id"] for r in records] == [second.id, first.id]
    assert records[0]["fields"] == [["message", "two"]]


def test_export_takes_the_folder_and_dates(formrelay: Run, form: Form) -> None:
    make_submission(db.session, form, fields={"message": "kept"})
    make_submission(db.session, form, fields={"message": "junk"}, spam=True)
    make_submission(
        db.session, form, fields={"message": "old"}, created_at=datetime(2025, 1, 5, tzinfo=UTC)
    )

    def messages(*options: str) -> list[str]:
        result = formrelay("export", "--form", form.key, *options)
        assert result.exit_code == 0, result.output
        return [row[2] for row in csv.reader(io.StringIO(result.stdout, newline=""))][1:]

    assert messages("--spam") == ["junk"]
    assert messages("--since", "2025-01-01", "--until", "2025-01-31") == ["old"]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--form", "nope"], "Error: No form with key nope."),
        (["--since", "soon"], "Error: since must be a day (YYYY-MM-DD)"),
    ],
)
def test_export_refuses_what_it_cannot_do(
    formrelay: Run, form: Form, options: list[str], error: str
) -> None:
    result = formrelay("export", "--form", form.key, *options)
    assert result.exit_code == 1
    assert result.stderr.startswith(error)


# -- import ----------------------------------------------------------------------------------
def test_an_export_imports_back_with_its_times_and_values(
    formrelay: Run, form: Form, tmp_path: Path
) -> None:
    make_submission(
        db.session,
        form,
        fields=[("phone", "+44 20 7946 0000"), ("message", "Two\nlines, ünïcode")],
        created_at=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
    )
    make_submission(
        db.session,
        form,
        fields={"message": "-5 degrees"},
        created_at=datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
    )
    exported = tmp_path / "export.csv"
    assert formrelay("export", "--form", form.key, "--output", str(exported)).exit_code == 0
    target = make_form(db.session, name="Copy")

    result = formrelay("import", "--form", target.key, str(exported))

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"Imported 2 submissions into form 'Copy' (key {target.key}); nothing was delivered.",
        "Time from column 'time'.",
        "Fields: phone, message",
        "Skipped columns: id",
    ]
    assert stored(target) == [
        (
            datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
            [["phone", "+44 20 7946 0000"], ["message", "Two\nlines, ünïcode"]],
            None,
        ),
        (datetime(2026, 11, 2, 12, 0, tzinfo=UTC), [["message", "-5 degrees"]], None),
    ]
    shown = inbox.list_submissions(db.session, form=target)
    assert [s.fields[0] for s in shown] == [
        ["message", "-5 degrees"],
        ["phone", "+44 20 7946 0000"],
    ]


def test_imported_submissions_are_delivered_to_no_one(
    formrelay: Run, form: Form, tmp_path: Path
) -> None:
    result = formrelay("import", "--form", form.key, str(DATA / "formspree.csv"))
    assert result.exit_code == 0, result.output
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_imported_submissions_are_found_by_search(formrelay: Run, form: Form) -> None:
    result = formrelay("import", "--form", form.key, str(DATA / "formspree.csv"))
    assert result.exit_code == 0, result.output
    db.session.rollback()
    found = db.session.scalars(inbox.filtered(None, inbox.SubmissionFilter(q="bo@example.com")))
    assert [s.fields for s in found] == [
        [["email", "bo@example.com"], ["name", "Bo"], ["message", "Hi there"]]
    ]


@pytest.mark.parametrize(
    ("fixture", "expected", "fields_line"),
    [
        (
            "formspree.csv",
            [
                (
                    datetime(2024, 2, 28, 9, 0, tzinfo=UTC),
                    [["email", "bo@example.com"], ["name", "Bo"], ["message", "Hi there"]],
                    None,
                ),
                (
                    datetime(2024, 3, 1, 14, 5, 9, tzinfo=UTC),
                    [
                        ["email", "ann@example.com"],
                        ["name", "Ann"],
                        ["message", "Hello,\r\ntwo lines"],
                    ],
                    None,
                ),
            ],
            "Fields: email, name, message",
        ),
        (
            "netlify.csv",
            [
                (
                    datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
                    [["name", "Max"], ["email", "max@example.com"]],
                    "198.51.100.2",
                ),
                (
                    datetime(2024, 3, 2, 10, 11, 12, 345000, tzinfo=UTC),
                    [
                        ["name", "Zoë"],
                        ["email", "zoe@example.com"],
                        ["message", "Grüße aus Köln"],
                    ],
                    "203.0.113.7",
                ),
            ],
            "Fields: name, email, message",
        ),
        (
            "basin.csv",
            [
                (
                    datetime(2024, 3, 3, 18, 30, tzinfo=UTC),
                    [
                        ["Name", "Lee"],
                        ["Email", "lee@example.com"],
                        ["Interests", "books"],
                        ["Message", "Thanks!"],
                    ],
                    "192.0.2.11",
                ),
                (
                    datetime(2024, 3, 4, 9, 0, tzinfo=UTC),
                    [
                        ["Name", "Kim"],
                        ["Email", "kim@example.com"],
                        ["Interests", "music, film"],
                        ["Message", "See you soon"],
                    ],
                    "192.0.2.10",
                ),
            ],
            "Fields: Name, Email, Interests, Message",
        ),
    ],
)
def test_each_providers_export_imports(
    formrelay: Run,
    form: Form,
    fixture: str,
    expected: list[tuple[datetime, list[list[str]], str | None]],
    fields_line: str,
) -> None:
    result = formrelay("import", "--form", form.key, str(DATA / fixture))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Imported 2 submissions")
    assert fields_line in result.output.splitlines()
    assert stored(form) == expected


def test_netlify_metadata_lands_in_the_submission_not_its_fields(
    formrelay: Run, form: Form
) -> None:
    result = formrelay("import", "--form", form.key, str(DATA / "netlify.csv"))
    assert "Skipped columns: id, form_name, site_url" in result.output.splitlines()
    db.session.rollback()
    newest = inbox.list_submissions(db.session, form=form)[0]
    assert (newest.user_agent, newest.referrer) == (
        "Mozilla/5.0 (X11; Linux x86_64)",
        "https://example.netlify.app/contact",
    )


def test_malformed_rows_are_reported_by_line_and_nothing_is_imported(
    formrelay: Run, form: Form, tmp_path: Path
) -> None:
    content = (
        b"time,name,message\n"
        b"2024-01-01T00:00:00Z,Ann,fine\n"  # line 2
        b'2024-01-02T00:00:00Z,Bo,"spans\nthree\nlines"\n'  # lines 3-5
        b"2024-01-03T00:00:00Z,Cy\n"  # line 6: a column short
        b"next tuesday,Di,when?\n"  # line 7
        b"2024-01-04T00:00:00Z,Ed,caf\xe9\n"  # line 8: Latin-1, not UTF-8
        b"2024-01-05T00:00:00Z,Flo,nul\x00here\n"  # line 9
        b"2024-01-06T00:00:00Z,Gus,fine too\n"
    )
    result = formrelay("import", "--form", form.key, str(write(tmp_path, content)))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {tmp_path / 'in.csv'}: Nothing was imported:",
        "line 6: has 2 columns where the header has 3",
        "line 7: time 'next tuesday' is not a time",
        "line 8: is not UTF-8 text (byte 28 of the line)",
        "line 9: holds a NUL character",
    ]
    assert stored(form) == []


def test_times_outside_the_years_1_to_9999_in_utc_are_lines_that_are_not_times(
    formrelay: Run, form: Form, tmp_path: Path
) -> None:
    content = (
        "time,message\n"
        "2024-01-01T00:00:00Z,fine\n"
        "0001-01-01T00:00:00+14:00,before year 1 in UTC\n"  # line 3
        "9999-12-31T23:00:00-14:00,after 9999 in UTC\n"  # line 4
        "2024-01-02T00:00:00Z,fine too\n"
    )
    result = formrelay("import", "--form", form.key, str(write(tmp_path, content)))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {tmp_path / 'in.csv'}: Nothing was imported:",
        "line 3: time '0001-01-01T00:00:00+14:00' is not a time",
        "line 4: time '9999-12-31T23:00:00-14:00' is not a time",
    ]
    assert stored(form) == []


def test_without_a_time_column_the_operator_is_asked_to_name_one(
    formrelay: Run, form: Form, tmp_path: Path
) -> None:
    path = write(tmp_path, "when,message\n2024-01-01 10:00,hello\n")
    refused = formrelay("import", "--form", form.key, str(path))
    assert refused.exit_code == 1
    assert (
        "line 1: no column holds the submission time; name it with --time-column "
        "(columns: when, message)" in refused.stderr
    )
    unknown = formrelay("import", "--form", form.key, str(path), "--time-column", "date")
    assert "line 1: there is no column named 'date' (columns: when, message)" in unknown.stderr
    named = formrelay("import", "--form", form.key, str(path), "--time-column", "when")
    assert named.exit_code == 0, named.output
    assert stored(form) == [(datetime(2024, 1, 1, 10, 0, tzinfo=UTC), [["message", "hello"]], None)]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", "line 1: the file is empty: a header row was expected"),
        (b'time,"message\n', "line 1: is not CSV"),
        (b"time,,message\n", "line 1: column 2 has no name"),
        (b'time,m\n2024-01-01,"unclosed\n', "line 2: is not valid CSV"),
    ],
)
def test_files_that_are_not_an_export_are_refused(
    formrelay: Run, form: Form, tmp_path: Path, content: bytes, error: str
) -> None:
    result = formrelay("import", "--form", form.key, str(write(tmp_path, content)))
    assert result.exit_code == 1
    assert error in result.stderr
    assert stored(form) == []


def test_a_large_import_is_one_transaction_across_batches(
    formrelay: Run, form: Form, tmp_path: Path
) -> None:
    lines = ["time,n"] + [f"2024-01-01T00:00:{n % 60:02d}Z,{n}" for n in range(2500)]
    lines.append("broken,row")
    path = write(tmp_path, "\n".join(lines) + "\n")
    refused = formrelay("import", "--form", form.key, str(path))
    assert "line 2502: time 'broken' is not a time" in refused.stderr
    assert stored(form) == []
    path.write_text("\n".join(lines[:-1]) + "\n")
    result = formrelay("import", "--form", form.key, str(path))
    assert result.output.startswith("Imported 2500 submissions")
    assert len(stored(form)) == 2500


def test_import_into_an_unknown_form_is_refused(formrelay: Run, app, tmp_path: Path) -> None:
    result = formrelay("import", "--form", "nope", str(DATA / "basin.csv"))
    assert result.exit_code == 1
    assert result.stderr == "Error: No form with key nope.\n"
