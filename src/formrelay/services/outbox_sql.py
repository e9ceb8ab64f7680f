"""The outbox's statements in the driver's own SQL, as group commit runs them.

Group commit (formrelay.ingest) stores every batch on one long-lived DBAPI connection,
through these statements. Through SQLAlchemy (a Session per batch, Core statements and
their bind processors) the committer spent about 85 us of CPU per submission in a batch of
16; these spend about 25 (SQLite, measured in-process): that difference was a sixth of
a submission's whole cost. The statements are the same as Core's and write the same
values as SQLAlchemy's types do (UTC datetimes without offset on SQLite, JSON text,
orjson's, JSONB on PostgreSQL), so every reader stays on the models. Imports and the
tests' factories, off the hot path, keep Core (services.search.insert_submissions).
The bench's delivery section uses them too, in a Session's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from . import field_names
from .search import FTS_TABLE, VECTOR_COLUMN, search_text

SUBMISSION_COLUMNS = (
    "form_id",
    "created_at",
    "fields",
    "reply_to",
    "subject",
    "cc",
    "remote_addr",
    "user_agent",
    "referrer",
    "origin",
    "is_spam",
    "spam_reason",
)
DELIVERY_COLUMNS = (
    "submission_id",
    "form_id",
    "channel",
    "target",
    "cc",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "last_error",
    "message",
)
ATTACHMENT_COLUMNS = (
    "submission_id",
    "field",
    "filename",
    "content_type",
    "size",
    "storage_key",
    "created_at",
)
# Each form with its verified recipients, in the order they were added: one row per
# recipient, or one with a NULL email for a form that has none (outbox.load_targets).
_FORMS = (
    "SELECT forms.id, forms.key, forms.enabled, forms.redirect_url, forms.store_only,"
    " forms.name, forms.notify_limit, users.email, recipients.email"
    " FROM forms JOIN users ON users.id = forms.owner_id"
    " LEFT OUTER JOIN recipients ON recipients.form_id = forms.id AND recipients.verified"
    " WHERE forms.key {keys} ORDER BY forms.id, recipients.id"
)


# SQLite: rows per multi-row statement, within its limit of bound values (32766).
_CHUNK = 500


def _columns(columns: Sequence[str]) -> str:
    return ", ".join(columns)


def _rows_sql(table: str, columns: Sequence[str], n: int, verb: str = "INSERT") -> str:
    row = f"({', '.join('?' * len(columns))})"
    return f"{verb} INTO {table} ({_columns(columns)}) VALUES {', '.join([row] * n)}"


def _chunks(rows: Sequence[Any]) -> Iterable[Sequence[Any]]:
    return (rows[i : i + _CHUNK] for i in range(0, len(rows), _CHUNK))


@dataclass(frozen=True)
class PreparedRows:
    """Submission rows, their values for the driver, and their search texts (or None)."""

    rows: Sequence[Mapping[str, Any]]
    values: list[tuple[Any, ...]]
    texts: list[str] | None


class DriverWriter:
    """The outbox's statements on a DBAPI connection (sqlite3 or psycopg), in whatever
    transaction it has open. `new_field_names` collects the (form id, name) pairs this
    transaction added on PostgreSQL, for field_names.remember once it has committed.

    A submission is inserted only while its form exists and is enabled, checked by the
    INSERT itself: group commit's forms come from a cache, and a form disabled or deleted
    in another process must refuse the next submission, not one a few seconds later.

    On SQLite each statement carries the whole batch (multi-row VALUES): every call into
    the driver lets go of the GIL, and the committer, holding the database's write lock,
    then waits for a request thread to give it back (about 0.2 ms each, measured under
    load), so fewer calls is a shorter lock for every writer on the machine.
    """

    def __init__(self, connection: Any, dialect: str) -> None:
        self.connection = connection
        self.sqlite = dialect == "sqlite"
        self.new_field_names: set[tuple[int, str]] = set()
        self._last_time: datetime | None = None
        self._last_text = ""

    def form_rows(self, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        keys = list(keys)
        cursor = self.connection.cursor()
        if self.sqlite:
            sql = _FORMS.format(keys=f"IN ({', '.join('?' * len(keys))})")
            return list(cursor.execute(sql, keys).fetchall())
        cursor.execute(_FORMS.format(keys="= ANY(%s)"), (keys,))
        return list(cursor.fetchall())

    def prepare_submissions(
        self, rows: Sequence[Mapping[str, Any]], *, index: bool
    ) -> PreparedRows:
        """The rows' values as the driver takes them, and their search texts: all the work
        that needs no database, done before SQLite's write lock is taken."""
        values = [self._values(row, SUBMISSION_COLUMNS) for row in rows]
        texts = [search_text(row["fields"]) for row in rows] if index else None
        return PreparedRows(rows, values, texts)

    def insert_prepared(self, prepared: PreparedRows) -> list[int | None]:
        """Insert the rows prepare_submissions prepared with, when it made their search
        texts, their search entries; and the new field names they bring. Returns their
        ids in order: None for one whose form is gone or disabled (nothing of it stored)."""
        rows, texts = prepared.rows, prepared.texts
        if self.sqlite:
            ids = self._insert_sqlite(prepared.values)
        else:
            ids = self._insert_pg(prepared.values, texts)
        if texts is not None and self.sqlite:
            entries = [(i, t) for i, t in zip(ids, texts, strict=True) if i is not None]
            if entries:
                self._many(FTS_TABLE, ("rowid", "body"), entries)
        self._record_field_names(
            [(i, row["form_id"], row["fields"]) for i, row in zip(ids, rows, strict=True) if i]
        )
        return ids

    def delivery_values(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Deliveries' values as the driver takes them (the submission's id first)."""
        return [self._values(row, DELIVERY_COLUMNS) for row in rows]

    def insert_delivery_values(self, values: Sequence[tuple[Any, ...]]) -> None:
        if values:
            self._many("deliveries", DELIVERY_COLUMNS, values)

    def _insert_sqlite(self, params: list[tuple[Any, ...]]) -> list[int | None]:
        # Under the write lock nobody else inserts: the ids SQLite would give, given here.
        cursor = self.connection.cursor()
        first = int(
            cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM submissions").fetchone()[0]
        )
        ids = list(range(first, first + len(params)))
        inserted = 0
        for chunk_ids, chunk in zip(_chunks(ids), _chunks(params), strict=True):
            values = [(i, *p) for i, p in zip(chunk_ids, chunk, strict=True)]
            cursor.execute(_guarded_sqlite(len(values)), [v for row in values for v in row])
            inserted += cursor.rowcount
        if inserted == len(ids):
            return list(ids)
        marks = ", ".join("?" * len(ids))
        found = {
            r[0] for r in cursor.execute(f"SELECT id FROM submissions WHERE id IN ({marks})", ids)
        }
        return [i if i in found else None for i in ids]

    def _insert_pg(
        self, params: list[tuple[Any, ...]], texts: list[str] | None
    ) -> list[int | None]:
        form_id = SUBMISSION_COLUMNS.index("form_id")
        if texts is None:
            sql, values = _GUARDED_PG, [(*p, p[form_id]) for p in params]
        else:
            sql = _GUARDED_PG_INDEXED
            values = [(*p, t, p[form_id]) for p, t in zip(params, texts, strict=True)]
        cursor = self.connection.cursor()
        # psycopg sends them in one pipeline and keeps each result, in order.
        cursor.executemany(sql, values, returning=True)
        ids: list[int | None] = []
        while True:
            row = cursor.fetchone()
            ids.append(int(row[0]) if row is not None else None)
            if not cursor.nextset():
                break
        return ids

    def insert_attachments(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._rows("attachments", ATTACHMENT_COLUMNS, rows)

    def _rows(self, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self._many(table, columns, [self._values(row, columns) for row in rows])

    def _many(
        self,
        table: str,
        columns: Sequence[str],
        values: Sequence[tuple[Any, ...]],
        verb: str = "INSERT",
    ) -> None:
        cursor = self.connection.cursor()
        if not self.sqlite:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"{verb} INTO {table} ({_columns(columns)}) VALUES ({marks})", values
            )
            return
        for chunk in _chunks(values):
            cursor.execute(
                _rows_sql(table, columns, len(chunk), verb), [v for row in chunk for v in row]
            )

    def _record_field_names(self, submissions: list[tuple[int, int, Sequence[Any]]]) -> None:
        first = field_names.first_positions(submissions)
        if not first:
            return
        if self.sqlite:
            self._many(
                "form_fields",
                ("form_id", "name", "position"),
                [(f, n, p) for (f, n), p in first.items()],
                verb="INSERT OR IGNORE",
            )
            return
        missing = [key for key in first if not field_names.known(key)]
        if not missing:
            return
        cursor = self.connection.cursor()
        cursor.execute(
            field_names.DRIVER_STORED, ([f for f, _ in missing], [n for _, n in missing])
        )
        stored = {(int(f), str(n)) for f, n in cursor.fetchall()}
        field_names.remember(stored)  # committed by others: true whatever becomes of this
        new = sorted(key for key in missing if key not in stored)
        if new:
            cursor.execute(
                field_names.DRIVER_INSERT,
                ([f for f, _ in new], [n for _, n in new], [first[key] for key in new]),
            )
            self.new_field_names.update(new)

    def _values(self, row: Mapping[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
        convert = self._convert
        return tuple(convert(column, row.get(column)) for column in columns)

    def _convert(self, column: str, value: Any) -> Any:
        if value is None or column not in _CONVERTED:
            return value
        if column in _JSON:
            return orjson.dumps(value).decode() if self.sqlite else _jsonb(value)
        if not self.sqlite:
            return value
        # SQLAlchemy's SQLite DATETIME: UTC, no offset, to the microsecond. A batch's rows
        # share their times, so the last one's text is kept.
        if value is not self._last_time:
            self._last_time = value
            self._last_text = (
                value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            )
        return self._last_text


_JSON = frozenset({"fields", "cc", "message"})
# Only while the form exists and is enabled (see DriverWriter).
_ENABLED = "EXISTS (SELECT 1 FROM forms WHERE forms.id = {form_id} AND forms.enabled)"
_PG_SELECT = ", ".join(["%s"] * len(SUBMISSION_COLUMNS))
_GUARDED_PG = (
    f"INSERT INTO submissions ({_columns(SUBMISSION_COLUMNS)}) SELECT {_PG_SELECT}"
    f" WHERE {_ENABLED.format(form_id='%s')} RETURNING id"
)
_GUARDED_PG_INDEXED = (
    f"INSERT INTO submissions ({_columns(SUBMISSION_COLUMNS)}, {VECTOR_COLUMN})"
    f" SELECT {_PG_SELECT}, to_tsvector('simple'::regconfig, %s)"
    f" WHERE {_ENABLED.format(form_id='%s')} RETURNING id"
)


@lru_cache(maxsize=64)
def _guarded_sqlite(n: int) -> str:
    # VALUES names its columns column1, column2...: the form's id is column2, after the id.
    row = f"({', '.join('?' * (len(SUBMISSION_COLUMNS) + 1))})"
    return (
        f"INSERT INTO submissions (id, {_columns(SUBMISSION_COLUMNS)})"
        f" SELECT * FROM (VALUES {', '.join([row] * n)})"
        f" WHERE {_ENABLED.format(form_id='column2')}"
    )


_CONVERTED = _JSON | {"created_at", "updated_at", "next_attempt_at"}


def _jsonb(value: Any) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value, dumps=_json_text)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()
