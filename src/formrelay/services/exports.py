"""Exports: what a submissions filter shows, as CSV or JSON, streamed in constant memory.

The web routes and `formrelay export` both call `export_chunks`, so a file is the same
whichever way it was made. Rows are read through one server-side cursor (PostgreSQL) or
SQLite's lazily stepped cursor, a thousand at a time, as plain Core rows (id, created_at,
fields): no ORM object is built per CSV row. The CSV header needs every field name before
the first row: it names every field the forms exported have received (services.field_names
keeps them as they arrive), read in the snapshot the rows are read in (`reading`), so it
covers every field the rows carry; a field no exported row has gets an empty column.
"""

from __future__ import annotations

import csv
import io
import json
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal, TypeVar

import orjson
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
from sqlalchemy.orm import Session, selectinload

from ..models import Attachment, Form, Submission, User
from . import field_names
from .attachments import format_size
from .errors import InvalidInput
from .inbox import DELIVERY_STATES, SubmissionFilter, filtered, submission_record
from .permissions import owned_forms

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")

BATCH_ROWS = 1000  # rows fetched per round trip
CHUNK_BYTES = 64 * 1024  # what one yield carries, about
# Values of a name sent more than once in one submission (checkboxes) share one cell.
REPEAT_SEPARATOR = ", "
# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FOLDERS = ("inbox", "spam")

Progress = Callable[[int], None]
T = TypeVar("T")  # told how many more rows were written


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
            moment = start + timedelta(days=1) if end_of_day else start
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{name} must be a day (YYYY-MM-DD) or an ISO 8601 time, not {value!r}."
        ) from None
    except OverflowError:  # the day after 9999-12-31
        raise _out_of_range(name, value) from None
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 once in UTC
        raise _out_of_range(name, value) from None


def _out_of_range(name: str, value: str) -> InvalidInput:
    return InvalidInput(
        f"{name} {value!r} is out of range: give a time between the years 1 and 9999 "
        "that stays within them in UTC."
    )


def filename(f: SubmissionFilter, fmt: Format, today: date) -> str:
    """A download's file name: the form's name as a slug (its key when no letter or digit
    of the name is left; "submissions" for every form), the folder and the day. The slug
    keeps letters of any script: the web's Content-Disposition adds an ASCII fallback."""
    stem = (slug(f.form.name) or f.form.key) if f.form is not None else "submissions"
    return f"{stem}{'-spam' if f.spam else ''}-{today.isoformat()}.{fmt}"


def slug(name: str) -> str:
    """`name` in lower case with each run of anything but letters and digits made one "-"
    ("Contact (EN)" -> "contact-en"), at most 60 characters."""
    return re.sub(r"[\W_]+", "-", name.lower()).strip("-")[:60].strip("-")


# -- reading -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportQuery:
    """What an export reads: the submissions (inbox.filtered) and its CSV columns' names."""

    rows: Select[Any]
    names: Select[Any]


def export_query(actor: User | None, f: SubmissionFilter) -> ExportQuery:
    """The export of what `f` selects for `actor` (None: the CLI, which sees all). Built
    while the actor and the form are loaded: the queries bind their ids, and need neither
    once built."""
    forms: Select[Any] | list[int] | None
    if f.form is not None:
        forms = [f.form.id]
    elif actor is not None and not actor.is_admin:
        forms = owned_forms(actor).with_only_columns(Form.id)
    else:
        forms = None
    return ExportQuery(rows=filtered(actor, f), names=field_names.listed(forms))


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


def count(session: Session, export: ExportQuery) -> int:
    """How many submissions `export` holds."""
    counted = select(func.count()).select_from(
        export.rows.order_by(None).with_only_columns(Submission.id).subquery()
    )
    return session.execute(counted).scalar_one()


def export_chunks(
    session: Session,
    export: ExportQuery,
    fmt: Format,
    progress: Progress | None = None,
    *,
    base_url: str = "",
) -> Iterator[bytes]:
    """`export` (from export_query), newest first, as UTF-8 byte chunks of about
    CHUNK_BYTES. Run it inside `reading`. File links start with `base_url` (they lead to
    the dashboard, which asks the reader to sign in)."""
    if fmt == "csv":
        return csv_chunks(session, export, progress, base_url=base_url)
    return json_chunks(session, export.rows, progress, base_url=base_url)


def _batches(
    session: Session, query: Select[Any], *, prefetch: bool = True
) -> Iterator[Sequence[Any]]:
    """(id, time as its CSV cell, fields) of each submission, BATCH_ROWS at a time; the
    database formats the time, which costs it less than Python. Fields come as JSON text,
    decoded in the caller's loop with orjson: SQLAlchemy's result processor (SQLite) and
    psycopg's jsonb loader (json.loads with its encoding check) cost twice as much a row.
    Without `prefetch`, the caller may use the session between batches (see prefetched)."""
    connection = session.connection()
    dialect = connection.dialect.name
    fields = (
        cast(Submission.fields, Text)
        if dialect == "postgresql"
        else type_coerce(Submission.fields, String())
    )
    columns = query.with_only_columns(Submission.id, _csv_time_sql(dialect), fields)
    result: Result[int, str, Any] = connection.execute(
        columns, execution_options={"yield_per": BATCH_ROWS}
    )
    if dialect == "postgresql" and prefetch:
        yield from prefetched(result.partitions())
    else:
        # SQLite works in this process, releasing the GIL for every row it steps: a
        # second thread there only makes them take turns (measured: half the speed).
        yield from result.partitions()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def prefetched(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`batches`, each fetched by a thread of its own while the caller works on the one
    before (at most `depth` ahead), so that the database server's work and ours overlap
    (psycopg releases the GIL while it waits). PostgreSQL spends about as long turning a
    million jsonb values into text as the export spends writing CSV: in-process, 37k rows/s
    one after the other, 64k overlapped (measured, loaded machine).

    The connection is the thread's alone until it ends: when the caller stops early (a
    download cancelled), the thread is told to stop and joined before this returns, so
    the connection goes back to its pool unused. A fetch's error is raised here."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fetch() -> None:
        try:
            for batch in batches:
                if not hand_over(batch):
                    return
        except BaseException as exc:  # raised in the caller's thread, below
            hand_over(_Failed(exc))
            return
        hand_over(_END)

    thread = threading.Thread(target=fetch, name="export-prefetch", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


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


def neutralise(cell: str) -> str:
    """A cell a spreadsheet will not run: one starting like a formula gets a leading "'"
    (OWASP's advice; spreadsheets show the value without it)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_time(moment: datetime) -> str:
    """A submission's time in its CSV cell: ISO 8601 in UTC to the second, e.g.
    2026-12-01T11:17:50Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_chunks(
    session: Session, export: ExportQuery, progress: Progress | None = None, *, base_url: str = ""
) -> Iterator[bytes]:
    """CSV: id, time, then one column per field name the forms have received, in the order
    they first arrived (services.field_names); a name sent more than once joins its values
    with REPEAT_SEPARATOR; last, when any submission has files, a "files" column
    (file_cell). Every text cell is neutralised."""
    names = field_names.names(session, export.names)
    query = export.rows
    position = {name: i + 2 for i, name in enumerate(names)}  # cells 0, 1: id and time
    blank: list[str | None] = [None] * len(names)  # None: no value yet (written empty)
    formula = "".join(FORMULA_STARTS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    with_files = _any_files(session, query)
    writer.writerow(
        ["id", "time", *(neutralise(name) for name in names), *(["files"] if with_files else [])]
    )
    written = 0
    # The hot loop of a million-row export: plain lists and local names, no calls per cell
    # but the JSON decoder's (orjson: 1 us a row where json took 2; the whole loop about
    # 12 us a row on SQLite, in-process).
    decode = orjson.loads
    # A batch's files are read between batches, on the reading session: no prefetching then.
    for batch in _batches(session, query, prefetch=not with_files):
        files = _files_of(session, [row[0] for row in batch]) if with_files else {}
        for submission_id, time, fields in batch:
            cells: list[Any] = [submission_id, time, *blank]
            for name, value in decode(fields):
                j = position[name]
                if cells[j] is None:
                    # Only a cell's start matters to a spreadsheet: its first value.
                    cells[j] = "'" + value if value and value[0] in formula else value
                else:
                    cells[j] += REPEAT_SEPARATOR + value
            if with_files:
                found = files.get(submission_id)
                cells.append(neutralise(file_cell(found, base_url)) if found else "")
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
