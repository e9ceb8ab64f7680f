"""Exports: the columns, the cells and the JSON a filter's submissions become."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from formrelay.extensions import db
from formrelay.models import Form
from formrelay.services import exports
from formrelay.services.errors import InvalidInput
from formrelay.services.inbox import SubmissionFilter

from ..factories import make_delivery, make_form, make_submission

MONDAY = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


def export(f: SubmissionFilter, fmt: exports.Format = "csv") -> str:
    with exports.reading(db.engine) as session:
        data = b"".join(exports.export_chunks(session, exports.export_query(None, f), fmt))
    return data.decode()


def rows(f: SubmissionFilter) -> list[list[str]]:
    return list(csv.reader(io.StringIO(export(f), newline="")))


@pytest.fixture
def form(app: Flask) -> Form:
    return make_form(db.session)


def test_columns_are_id_time_and_every_field_name_in_first_seen_order(form: Form) -> None:
    older = make_submission(
        db.session, form, fields={"name": "Ann", "fax": "123"}, created_at=MONDAY
    )
    newer = make_submission(
        db.session,
        form,
        fields={"email": "bo@example.com", "name": "Bo", "message": "hi"},
        created_at=MONDAY + timedelta(hours=1),
    )
    # Rows newest first; columns in the order the names first arrived.
    assert rows(SubmissionFilter(form=form)) == [
        ["id", "time", "name", "fax", "email", "message"],
        [str(newer.id), "2026-11-30T10:30:00Z", "Bo", "", "bo@example.com", "hi"],
        [str(older.id), "2026-11-30T09:30:00Z", "Ann", "123", "", ""],
    ]


def test_a_name_sent_more_than_once_shares_one_cell(form: Form) -> None:
    make_submission(db.session, form, fields=[("colour", "red"), ("size", "L"), ("colour", "blue")])
    assert rows(SubmissionFilter(form=form))[1][2:] == ["red, blue", "L"]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1 555 0100", "'+1 555 0100"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("plain = fine", "plain = fine"),
        ("a-b", "a-b"),
        (" =spaced", " =spaced"),
        ("", ""),
    ],
)
def test_cells_that_a_spreadsheet_would_run_as_formulas_are_neutralised(
    form: Form, value: str, cell: str
) -> None:
    make_submission(db.session, form, fields={"message": value})
    assert rows(SubmissionFilter(form=form))[1][2] == cell


def test_field_names_are_neutralised_in_the_header_too(form: Form) -> None:
    make_submission(db.session, form, fields={"=cmd": "x"})
    assert rows(SubmissionFilter(form=form))[0] == ["id", "time", "'=cmd"]


def test_multi_line_and_unicode_values_survive_intact(form: Form) -> None:
    message = 'Line one,\nline "two"\r\nline drei: äöü — 日本語 🙂'
    make_submission(db.session, form, fields={"message": message, "name": "Zoë"})
    assert rows(SubmissionFilter(form=form))[1][2:] == [message, "Zoë"]


def test_an_empty_selection_is_a_header_alone(form: Form) -> None:
    assert export(SubmissionFilter(form=form)) == "id,time\r\n"


def test_csv_follows_the_filter_folder_and_dates(form: Form) -> None:
    other_form = make_form(db.session, name="Other")
    make_submission(db.session, other_form, fields={"message": "other form"})
    make_submission(db.session, form, fields={"message": "spam"}, spam=True)
    make_submission(db.session, form, fields={"message": "too old"}, created_at=MONDAY)
    make_submission(
        db.session, form, fields={"message": "in range"}, created_at=MONDAY + timedelta(days=1)
    )
    make_submission(
        db.session, form, fields={"message": "too new"}, created_at=MONDAY + timedelta(days=2)
    )

    def messages(f: SubmissionFilter) -> list[str]:
        return [row[2] for row in rows(f)[1:]]

    day = exports.filter_from_params({"since": "2026-12-01", "until": "2026-12-01"}, form=form)
    assert messages(day) == ["in range"]
    assert messages(SubmissionFilter(form=form, spam=True)) == ["spam"]
    assert sorted(messages(SubmissionFilter())) == [
        "in range",
        "other form",
        "too new",
        "too old",
    ]


def test_json_is_an_array_of_submission_records(form: Form) -> None:
    submission = make_submission(
        db.session,
        form,
        fields=[("name", "Zoë"), ("note", "a\nb")],
        reply_to="zoe@example.com",
        created_at=MONDAY,
    )
    make_delivery(db.session, submission, status="sent", attempts=1, sent_at=MONDAY)
    assert json.loads(export(SubmissionFilter(form=form), "json")) == [
        {
            "id": submission.id,
            "form": form.key,
            "created_at": "2026-11-30T09:30:00+00:00",
            "fields": [["name", "Zoë"], ["note", "a\nb"]],
            "reply_to": "zoe@example.com",
            "subject": None,
            "spam": False,
            "spam_reason": None,
            "deliveries": [
                {
                    "channel": "email",
                    "target": "owner@example.com",
                    "status": "sent",
                    "attempts": 1,
                    "last_error": None,
                    "sent_at": "2026-11-30T09:30:00+00:00",
                }
            ],
            "files": [],
        }
    ]


def test_json_of_nothing_is_an_empty_array(form: Form) -> None:
    assert json.loads(export(SubmissionFilter(form=form), "json")) == []


def test_large_exports_come_in_chunks_and_report_progress(form: Form) -> None:
    for n in range(300):
        make_submission(db.session, form, fields={"message": f"{n} " + "x" * 400})
    told: list[int] = []
    with exports.reading(db.engine) as session:
        chunks = list(
            exports.export_chunks(
                session, exports.export_query(None, SubmissionFilter(form=form)), "csv", told.append
            )
        )
    assert len(chunks) > 1
    assert all(len(chunk) < exports.CHUNK_BYTES + 1024 for chunk in chunks)
    assert sum(told) == 300


def test_count_is_what_the_export_holds(form: Form) -> None:
    for _ in range(3):
        make_submission(db.session, form)
    make_submission(db.session, form, spam=True)
    with exports.reading(db.engine) as session:
        assert exports.count(session, exports.export_query(None, SubmissionFilter(form=form))) == 3


def test_days_are_read_in_the_viewers_zone_with_both_ends_included() -> None:
    f = exports.filter_from_params(
        {"folder": "spam", "since": "2026-12-01", "until": "2026-12-02", "q": " word "},
        zone=ZoneInfo("Europe/Berlin"),
    )
    assert f.spam and f.q == "word"
    assert f.since == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert f.until == datetime(2026, 12, 2, 23, 0, tzinfo=UTC)


def test_an_exact_time_bound_is_taken_as_given() -> None:
    f = exports.filter_from_params({"until": "2026-12-01T10:00:00+01:00"})
    assert f.until == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"folder": "trash"}, "folder must be inbox or spam"),
        ({"since": "yesterday"}, "since must be a day"),
        ({"until": "2026-13-01"}, "until must be a day"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "until must be later than since"),
    ],
)
def test_bad_filter_parameters_are_refused_by_name(params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        exports.filter_from_params(params)


def test_file_names_say_form_folder_and_day(form: Form) -> None:
    day = datetime(2026, 12, 1).date()
    assert exports.filename(SubmissionFilter(form=form), "csv", day) == "contact-2026-12-01.csv"
    form.name = "Contact (EN) — main!"
    assert exports.filename(SubmissionFilter(form=form, spam=True), "csv", day) == (
        "contact-en-main-spam-2026-12-01.csv"
    )
    form.name = "***"  # nothing of the name is left: the key
    assert exports.filename(SubmissionFilter(form=form), "csv", day) == f"{form.key}-2026-12-01.csv"
    assert exports.filename(SubmissionFilter(spam=True), "json", day) == (
        "submissions-spam-2026-12-01.json"
    )


def test_prefetching_keeps_the_order_and_ends_with_the_batches() -> None:
    assert list(exports.prefetched(iter([[1, 2], [3], [4, 5]]))) == [[1, 2], [3], [4, 5]]
    assert list(exports.prefetched(iter([]))) == []


def test_a_failed_fetch_is_raised_to_the_reader_after_the_batches_before_it() -> None:
    def batches() -> Iterator[list[int]]:
        yield [1]
        raise RuntimeError("connection lost")

    reading = exports.prefetched(batches())
    assert next(reading) == [1]
    with pytest.raises(RuntimeError, match="connection lost"):
        next(reading)


def test_a_reader_that_stops_early_stops_the_fetching_thread_before_going_on() -> None:
    """A cancelled download: the connection must be the pool's again, nobody else's."""
    fetched: list[int] = []

    def batches() -> Iterator[list[int]]:
        for n in range(1000):
            fetched.append(n)
            yield [n]

    reading = exports.prefetched(batches(), depth=2)
    assert next(reading) == [0]
    reading.close()
    assert not any(t.name == "export-prefetch" for t in threading.enumerate())
    # It fetched at most what fits ahead of the reader, not the rest.
    assert len(fetched) <= 4
