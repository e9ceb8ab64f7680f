"""Exports: what a submissions filter shows, as CSV or JSON, streamed in constant memory.

The web routes and `formrelay export` both call `export_chunks`, so a file is the same
whichever way it was made. Rows are read through one server-side cursor (PostgreSQL) or
SQLite's lazily stepped cursor, a thousand at a time, as plain Core rows (id, created_at,
fields): no ORM object is built per CSV row. The CSV header needs every field name before
the first row, so a first pass reads the names only; both passes run in one snapshot
(`reading`), so the header names every field the rows carry.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Engine,
    Result,
    Select,
    String,
    Text,
    cast,
    func,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONPATH
from sqlalchemy.orm import Session, selectinload

from ..models import Attachment, Form, Submission
from .attachments import format_size
from .errors import InvalidInput
from .inbox import DELIVERY_STATES, SubmissionFilter, submission_record

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")

BATCH_ROWS = 1000  # rows fetched per round trip
CHUNK_BYTES = 64 * 1024  # what one yield carries, about
# Values of a name sent more than once in one submission (checkboxes) share one cell.
REPEAT_SEPARATOR = ", "
# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FOLDERS = ("inbox", "spam")

Progress = Callable[[int], None]  # told how many more rows were written


# -- the filter, from a page's query string or the CLI's options ---------------------------
def filter_from_params(
    params: Mapping[str, str], *, form: Form | None = None, zone: tzinfo = UTC
) -> SubmissionFilter:
    """The SubmissionFilter a submissions page's GET parameters describe: `folder`
    (inbox, the default, or spam), `since` and `until` (YYYY-MM-DD, both days included, in
    `zone`; or an ISO 8601 time, `until` then excluded), `q` (the search, passed on) and
    `delivery` (failed or dead: submissions with a delivery in that state). The one parser
    of these parameters: the submissions pages and their exports show the same rows.

    Raises InvalidInput naming the parameter."""
    folder = (params.get("folder") or "inbox").strip()
    if folder not in FOLDERS:
        raise InvalidInput(f"folder must be inbox or spam, not {folder!r}.")
    since = _moment(params.get("since"), "since", zone, end_of_day=False)
    until = _moment(params.get("until"), "until", zone, end_of_day=True)
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until must be later than since.")
    delivery = (params.get("delivery") or "").strip() or None
    if delivery is not None and delivery not in DELIVERY_STATES:
        raise InvalidInput(f"delivery must be one of {', '.join(DELIVERY_STATES)}.")
    return SubmissionFilter(
        form=form,
        spam=folder == "spam",
        q=(params.get("q") or "").strip(),
        since=since,
        until=until,
        delivery=delivery,
    )


def _moment(value: str | None, name: str, zone: tzinfo, *, end_of_day: bool) -> datetime | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        if len(value) == 10:  # a day: since its first moment, until the end of it
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=zone)
            return (start + timedelta(days=1) if end_of_day else start).astimezone(UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{name} must be a day (YYYY-MM-DD) or an ISO 8601 time, not {value!r}."
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def filename(f: SubmissionFilter, fmt: Format, today: date) -> str:
    """A download's file name: the form key (or "submissions"), the folder and the day.
    Form keys are URL-safe base64, so the name needs no quoting."""
    stem = f.form.key if f.form is not None else "submissions"
    return f"{stem}{'-spam' if f.spam else ''}-{today.isoformat()}.{fmt}"


# -- reading -------------------------------------------------------------------------------
@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A session on a connection of its own, in one snapshot from the first read to the
    last: on PostgreSQL a REPEATABLE READ transaction (read committed would let a field name
    arrive between the header pass and the rows); SQLite's WAL readers see one snapshot
    anyway. Closed, and the connection returned to the pool, when the block ends."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin(), Session(bind=connection) as session:
            yield session


def count(session: Session, query: Select[Any]) -> int:
    """How many submissions `query` (from inbox.filtered) selects."""
    counted = select(func.count()).select_from(
        query.order_by(None).with_only_columns(Submission.id).subquery()
    )
    return session.execute(counted).scalar_one()


def export_chunks(
    session: Session,
    query: Select[Any],
    fmt: Format,
    progress: Progress | None = None,
    *,
    base_url: str = "",
) -> Iterator[bytes]:
    """The export of what `query` (from inbox.filtered) selects, newest first, as UTF-8
    byte chunks of about CHUNK_BYTES. Run it inside `reading`. File links start with
    `base_url` (they lead to the dashboard, which asks the reader to sign in)."""
    if fmt == "csv":
        return csv_chunks(session, query, progress, base_url=base_url)
    return json_chunks(session, query, progress, base_url=base_url)


def _rows(session: Session, query: Select[Any], *, with_files: bool = False) -> Iterator[Any]:
    """(id, time as its CSV cell, fields) of each submission, streamed BATCH_ROWS at a
    time; the database formats the time, which costs it less than Python."""
    connection = session.connection()
    dialect = connection.dialect.name
    # As text, decoded here: SQLAlchemy's JSON result processor costs a call per row more.
    # (psycopg decodes jsonb itself, as fast, so PostgreSQL's stays as it is.)
    fields = (
        Submission.fields if dialect == "postgresql" else type_coerce(Submission.fields, String())
    )
    columns = query.with_only_columns(Submission.id, _csv_time_sql(dialect), fields)
    result: Result[int, str, Any] = connection.execute(
        columns, execution_options={"yield_per": BATCH_ROWS}
    )
    decode = None if dialect == "postgresql" else json.loads
    for batch in result.partitions():
        # The batch's files, in one query, when the export has any.
        files = _files_of(session, [row[0] for row in batch]) if with_files else {}
        if decode is None:
            for submission_id, time, fields in batch:
                yield submission_id, time, fields, files.get(submission_id, ())
        else:
            for submission_id, time, text in batch:
                yield submission_id, time, decode(text), files.get(submission_id, ())


def _files_of(session: Session, ids: list[int]) -> dict[int, list[Any]]:
    """(id, submission_id, filename, size) of the files of these submissions, by submission."""
    found: dict[int, list[Any]] = {}
    rows = session.execute(
        select(Attachment.id, Attachment.submission_id, Attachment.filename, Attachment.size)
        .where(Attachment.submission_id.in_(ids))
        .order_by(Attachment.id)
    )
    for row in rows:
        found.setdefault(row.submission_id, []).append(row)
    return found


def file_cell(files: Any, base_url: str) -> str:
    """The CSV cell listing a submission's files: "name (size) link", one per line."""
    return "\n".join(
        f"{f.filename} ({format_size(f.size)}) "
        f"{base_url}/submissions/{f.submission_id}/files/{f.id}"
        for f in files
    )


def _csv_time_sql(dialect: str) -> ColumnElement[str]:
    """csv_time() in SQL: 2026-12-01T11:17:50Z."""
    if dialect == "postgresql":
        utc = func.timezone("UTC", Submission.created_at)
        return func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    # SQLite keeps UTC times as text, "2026-12-01 11:17:50.000000".
    return func.strftime("%Y-%m-%dT%H:%M:%SZ", type_coerce(Submission.created_at, String))


def field_names(session: Session, query: Select[Any]) -> list[str]:
    """Every field name the selected submissions use, in the order they first appear:
    newest submission first, each submission's fields in submitted order."""
    connection = session.connection()
    seen: dict[str, None] = {}
    if connection.dialect.name == "postgresql":
        # The server lists each submission's names (the values, most of the bytes, stay
        # there), and most submissions of a form send the same list: decode each list once.
        names = func.jsonb_path_query_array(Submission.fields, cast("$[*][0]", JSONPATH))
        result = connection.execute(
            query.with_only_columns(cast(names, Text)),
            execution_options={"yield_per": BATCH_ROWS},
        )
        lists: set[str] = set()
        for (listed,) in result:
            if listed not in lists:
                lists.add(listed)
                seen.update(dict.fromkeys(n for n in json.loads(listed) if n not in seen))
        return list(seen)
    # SQLite: decoding the text here measured faster than its json_each() per row.
    texts: Result[str] = connection.execute(
        query.with_only_columns(type_coerce(Submission.fields, String())),
        execution_options={"yield_per": BATCH_ROWS},
    )
    for (text,) in texts:
        for name, _ in json.loads(text):
            if name not in seen:
                seen[name] = None
    return list(seen)


def neutralise(cell: str) -> str:
    """A cell a spreadsheet will not run: one starting like a formula gets a leading "'"
    (OWASP's advice; spreadsheets show the value without it)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_time(moment: datetime) -> str:
    """A submission's time in its CSV cell: ISO 8601 in UTC to the second, e.g.
    2026-12-01T11:17:50Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_chunks(
    session: Session, query: Select[Any], progress: Progress | None = None, *, base_url: str = ""
) -> Iterator[bytes]:
    """CSV: id, time, then one column per field name (see field_names); a name sent more
    than once joins its values with REPEAT_SEPARATOR; last, when any submission has files,
    a "files" column (file_cell). Every text cell is neutralised."""
    names = field_names(session, query)
    position = {name: i for i, name in enumerate(names)}
    width = len(names)
    formula = "".join(FORMULA_STARTS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    with_files = _any_files(session, query)
    writer.writerow(
        ["id", "time", *(neutralise(name) for name in names), *(["files"] if with_files else [])]
    )
    written = 0
    # The hot loop of a million-row export: plain lists and local names, no calls per cell.
    for submission_id, time, fields, files in _rows(session, query, with_files=with_files):
        cells: list[Any] = [submission_id, time, *([""] * width)]
        filled = 0  # bit i: column i holds a value already
        for name, value in fields:
            i = position[name]
            bit = 1 << i
            if filled & bit:
                cells[i + 2] += REPEAT_SEPARATOR + value
            else:
                cells[i + 2] = value
                filled |= bit
        for i in range(2, width + 2):
            cell = cells[i]
            if cell and cell[0] in formula:
                cells[i] = "'" + cell
        if with_files:
            cells.append(neutralise(file_cell(files, base_url)) if files else "")
        writer.writerow(cells)
        written += 1
        if buffer.tell() >= CHUNK_BYTES:
            yield _drain(buffer)
            if progress is not None:
                progress(written)
            written = 0
    yield _drain(buffer)
    if progress is not None and written:
        progress(written)


def _any_files(session: Session, query: Select[Any]) -> bool:
    """Whether any selected submission has a file (the CSV then has a files column).

    An installation without any file answers from the empty table at once; otherwise the
    filter is joined to the files."""
    if session.scalar(select(Attachment.id).limit(1)) is None:
        return False
    ids = query.with_only_columns(Submission.id).order_by(None)
    found = session.scalar(
        select(Attachment.id).where(Attachment.submission_id.in_(ids.scalar_subquery())).limit(1)
    )
    return found is not None


def json_chunks(
    session: Session, query: Select[Any], progress: Progress | None = None, *, base_url: str = ""
) -> Iterator[bytes]:
    """JSON: an array of inbox.submission_record objects (the API's shape), newest first,
    one per line."""
    loading = query.options(
        selectinload(Submission.deliveries),
        selectinload(Submission.form),
        selectinload(Submission.attachments),
    )
    result = session.scalars(loading, execution_options={"yield_per": BATCH_ROWS})
    buffer = io.StringIO()
    buffer.write("[")
    separator = "\n"
    written = 0
    for submission in result:
        buffer.write(separator)
        record = submission_record(submission, base_url=base_url)
        buffer.write(json.dumps(record, ensure_ascii=False))
        separator = ",\n"
        written += 1
        if buffer.tell() >= CHUNK_BYTES:
            yield _drain(buffer)
            if progress is not None:
                progress(written)
            written = 0
    buffer.write("\n]\n")
    yield _drain(buffer)
    if progress is not None and written:
        progress(written)


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data
