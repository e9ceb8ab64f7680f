"""Imports: another service's CSV export (or formrelay's own) into stored submissions.

Formspree, Netlify and Basin export one column per field plus a few of their own (an id,
the time, sometimes the sender's address and browser). `check_file` reads the whole file
without touching the database and either returns what it found or raises ImportRefused
listing each malformed row by line number; `import_file` then stores every row in the
caller's transaction, delivering nothing. A file is imported whole or not at all.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any, cast

from sqlalchemy import Connection, Table
from sqlalchemy.orm import Session

from ..models import Form, Submission
from . import search
from .errors import InvalidInput
from .exports import FORMULA_STARTS

# Recognised provider columns, by their name lower-cased with spaces and dashes as "_" and
# leading "_" dropped. The first time column found, in this order, is the submission's time.
TIME_COLUMNS = (
    "time",
    "created_at",
    "submitted_at",
    "submission_date",
    "date_submitted",
    "received_at",
    "timestamp",
    "created",
    "submitted",
    "date",
)
SKIPPED_COLUMNS = frozenset(
    {"id", "submission_id", "uuid", "form_id", "form_name", "site_url", "site_id"}
)
META_COLUMNS = {
    "ip": "remote_addr",
    "ip_address": "remote_addr",
    "remote_addr": "remote_addr",
    "user_agent": "user_agent",
    "useragent": "user_agent",
    "referrer": "referrer",
    "referer": "referrer",
}
META_LENGTHS = {"remote_addr": 64, "user_agent": 512, "referrer": 2000}
BATCH_ROWS = 1000
MAX_PROBLEMS = 20  # listed; more are counted
FIELD_LIMIT = 10 * 1024 * 1024  # characters in one cell

_SUBMISSIONS = cast(Table, Submission.__table__)
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Problem:
    line: int  # where the row starts, 1 being the header
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportRefused(InvalidInput):
    """The file has malformed rows; nothing of it was imported."""

    def __init__(self, problems: list[Problem], more: int = 0) -> None:
        self.problems = problems
        lines = [str(p) for p in problems]
        if more:
            lines.append(f"... and {more} more")
        super().__init__("Nothing was imported:\n" + "\n".join(lines))


@dataclass(frozen=True)
class Layout:
    """What each column of a file is: the time, a field, metadata or skipped."""

    header: list[str]
    time_column: int
    fields: list[tuple[int, str]]  # (column, field name) in file order
    meta: list[tuple[int, str]]  # (column, Submission attribute)

    @property
    def skipped(self) -> list[str]:
        used = {self.time_column, *(i for i, _ in self.fields), *(i for i, _ in self.meta)}
        return [name for i, name in enumerate(self.header) if i not in used]


@dataclass(frozen=True)
class CheckedFile:
    layout: Layout
    rows: int


@dataclass
class _Reading:
    problems: list[Problem] = field(default_factory=list)
    more: int = 0

    def add(self, line: int, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(line, message))
        else:
            self.more += 1

    def raise_if_any(self) -> None:
        if self.problems:
            raise ImportRefused(self.problems, self.more)


def normalized(column: str) -> str:
    return column.strip().lower().replace(" ", "_").replace("-", "_").lstrip("_")


def layout_for(header: list[str], time_column: str | None = None) -> Layout:
    """Which column is the time (`time_column`, else the first of TIME_COLUMNS present),
    which are metadata (META_COLUMNS) or skipped (SKIPPED_COLUMNS); the rest are fields,
    named as in the header. Raises ImportRefused (line 1)."""
    keys = [normalized(name) for name in header]
    if time_column is not None:
        matches = [i for i, name in enumerate(header) if name.strip() == time_column.strip()]
        if not matches:
            raise ImportRefused(
                [Problem(1, f"there is no column named {time_column!r} ({_listing(header)})")]
            )
        time_at = matches[0]
    else:
        found = [keys.index(name) for name in TIME_COLUMNS if name in keys]
        if not found:
            raise ImportRefused(
                [
                    Problem(
                        1,
                        "no column holds the submission time; name it with --time-column "
                        f"({_listing(header)})",
                    )
                ]
            )
        time_at = found[0]
    fields: list[tuple[int, str]] = []
    meta: list[tuple[int, str]] = []
    taken: set[str] = set()
    unnamed: list[Problem] = []
    for i, (name, key) in enumerate(zip(header, keys, strict=True)):
        if i == time_at:
            continue
        if key in META_COLUMNS and META_COLUMNS[key] not in taken:
            meta.append((i, META_COLUMNS[key]))
            taken.add(META_COLUMNS[key])
        elif key in SKIPPED_COLUMNS:
            continue
        elif not name.strip():
            unnamed.append(Problem(1, f"column {i + 1} has no name"))
        else:
            fields.append((i, name))
    if unnamed:
        raise ImportRefused(unnamed)
    return Layout(header, time_at, fields, meta)


def _listing(header: list[str]) -> str:
    return "columns: " + ", ".join(header) if header else "the header is empty"


def parse_time(text: str) -> datetime:
    """A provider's time: ISO 8601 (with "T" or a space, "Z" or an offset), the same with
    " UTC" after it, RFC 2822 (e-mail style), or Unix seconds or milliseconds. Without a
    zone it is UTC. Raises ValueError."""
    value = text.strip()
    if value.isdigit() and len(value) in (10, 13):
        seconds = int(value) / (1000 if len(value) == 13 else 1)
        return datetime.fromtimestamp(seconds, UTC)
    for suffix in (" UTC", " GMT"):
        if value.upper().endswith(suffix):
            value = value[: -len(suffix)] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            raise ValueError(text) from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(text) from None


def _restore(cell: str) -> str:
    """A cell as it was before an export neutralised it (formrelay's and most others' add
    "'" before a formula-like value)."""
    if cell.startswith("'") and cell[1:2] and cell[1:].startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


def _lines(stream: IO[bytes], reading: _Reading, progress: Progress | None) -> Iterator[str]:
    """The file's lines as text (UTF-8, an initial byte-order mark dropped); a line that is
    not UTF-8 or holds NUL is a problem, passed on repaired so that later ones are found."""
    for number, raw in enumerate(stream, start=1):
        if progress is not None:
            progress(len(raw))
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            reading.add(number, f"is not UTF-8 text (byte {exc.start + 1} of the line)")
            line = raw.decode("utf-8", errors="replace")
        if "\0" in line:
            reading.add(number, "holds a NUL character")
            line = line.replace("\0", "")
        yield line


def _open(
    stream: IO[bytes],
    reading: _Reading,
    time_column: str | None,
    progress: Progress | None = None,
) -> tuple[Layout, Iterator[tuple[int, dict[str, object]]]]:
    """The file's layout (from its header) and its rows, each as (line, submission row for
    the insert); problems go to `reading`."""
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    reader = csv.reader(_lines(stream, reading, progress), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRefused([Problem(1, "the file is empty: a header row was expected")]) from None
    except csv.Error as exc:
        raise ImportRefused([Problem(1, f"is not CSV ({exc})")]) from None
    reading.raise_if_any()  # a header that is not text: nothing further makes sense
    layout = layout_for(header, time_column)
    return layout, _rows(reader, layout, reading)


def _rows(
    reader: Any, layout: Layout, reading: _Reading
) -> Iterator[tuple[int, dict[str, object]]]:
    header, width = layout.header, len(layout.header)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader cannot find the next row reliably after this
            reading.add(start, f"is not valid CSV ({exc})")
            return
        if not row:  # a blank line
            continue
        if len(row) != width:
            reading.add(start, f"has {len(row)} columns where the header has {width}")
            continue
        try:
            created_at = parse_time(row[layout.time_column])
        except ValueError:
            column = header[layout.time_column]
            reading.add(start, f"{column} {row[layout.time_column]!r} is not a time")
            continue
        record: dict[str, object] = {
            "created_at": created_at,
            "fields": [[name, _restore(row[i])] for i, name in layout.fields if row[i]],
        }
        for i, attribute in layout.meta:
            record[attribute] = row[i][: META_LENGTHS[attribute]] or None
        yield start, record


def check_file(
    stream: IO[bytes], *, time_column: str | None = None, progress: Progress | None = None
) -> CheckedFile:
    """Read the whole file and say what it holds; touches no database. `progress` is told
    the bytes read. Raises ImportRefused listing every malformed row (up to MAX_PROBLEMS)."""
    stream.seek(0)
    reading = _Reading()
    layout, records = _open(stream, reading, time_column, progress)
    rows = sum(1 for _ in records)
    reading.raise_if_any()
    return CheckedFile(layout, rows)


def import_file(
    session: Session,
    form: Form,
    stream: IO[bytes],
    *,
    time_column: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Store every row of a file `check_file` accepted as a submission of `form`, in the
    session's transaction (not committed), delivering nothing; `progress` is told the rows
    stored. Returns how many. Raises ImportRefused if the file has become a bad one since
    (the caller rolls back)."""
    stream.seek(0)
    reading = _Reading()
    _, records = _open(stream, reading, time_column)
    connection = session.connection()
    batch: list[dict[str, object]] = []
    stored = 0
    for _, record in records:
        record.update(form_id=form.id, cc=[], is_spam=False)
        batch.append(record)
        if len(batch) >= BATCH_ROWS:
            stored += _store(connection, batch, progress)
    reading.raise_if_any()
    stored += _store(connection, batch, progress)
    return stored


def _store(
    connection: Connection, batch: list[dict[str, object]], progress: Progress | None
) -> int:
    """Insert the batch (every row has the same keys: the file's layout decides them), with
    its search index entries, as ingest does."""
    if not batch:
        return 0
    n = len(batch)
    search.insert_submissions(connection, batch)
    batch.clear()
    if progress is not None:
        progress(n)
    return n
