"""The outbox's statements in the driver's own SQL, as group commit runs them.

Group commit (formrelay.ingest) stores every batch on one long-lived DBAPI connection,
through these statements. Through SQLAlchemy (a Session per batch, Core statements and
their bind processors) the committer spent about 85 us of CPU per submission in a batch of
16; these spend about 25 (SQLite, measured in-process): that difference was a sixth of
a submission's whole cost. The statements are the same as Core's and write the same
values as SQLAlchemy's types do (UTC datetimes without offset on SQLite, JSON text,
orjson's, JSONB on PostgreSQL), so every reader stays on the models. Imports and the
tests' factories, off the hot path, keep Core (services.search.insert_submissions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
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


def _insert(table: str, columns: Sequence[str], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


class DriverWriter:
    """The outbox's statements on a DBAPI connection (sqlite3 or psycopg), in whatever
    transaction it has open. `new_field_names` collects the (form id, name) pairs this
    transaction added on PostgreSQL, for field_names.remember once it has committed."""

    def __init__(self, connection: Any, dialect: str) -> None:
        self.connection = connection
        self.sqlite = dialect == "sqlite"
        self.new_field_names: set[tuple[int, str]] = set()
        self._last_time: datetime | None = None
        self._last_text = ""
        mark = "?" if self.sqlite else "%s"
        self._submissions = _insert("submissions", SUBMISSION_COLUMNS, mark)
        if not self.sqlite:
            self._indexed = (
                self._submissions[: self._submissions.index(") VALUES")]
                + f", {VECTOR_COLUMN}) VALUES ({', '.join(['%s'] * len(SUBMISSION_COLUMNS))},"
                " to_tsvector('simple'::regconfig, %s)) RETURNING id"
            )
            self._submissions += " RETURNING id"
        self._deliveries = _insert("deliveries", DELIVERY_COLUMNS, mark)
        self._attachments = _insert("attachments", ATTACHMENT_COLUMNS, mark)

    def form_rows(self, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        keys = list(keys)
        cursor = self.connection.cursor()
        if self.sqlite:
            sql = _FORMS.format(keys=f"IN ({', '.join('?' * len(keys))})")
            return list(cursor.execute(sql, keys).fetchall())
        cursor.execute(_FORMS.format(keys="= ANY(%s)"), (keys,))
        return list(cursor.fetchall())

    def insert_submissions(self, rows: Sequence[Mapping[str, Any]], *, index: bool) -> list[int]:
        """Insert the rows with, when `index`, their search entries; and the new field
        names they bring. Returns their ids in order."""
        params = [self._values(row, SUBMISSION_COLUMNS) for row in rows]
        cursor = self.connection.cursor()
        ids: list[int] = []
        if self.sqlite:
            for values in params:  # one prepared statement, kept by the driver's cache
                cursor.execute(self._submissions, values)
                ids.append(int(cursor.lastrowid))
            if index:
                cursor.executemany(
                    f"INSERT INTO {FTS_TABLE} (rowid, body) VALUES (?, ?)",
                    [(i, search_text(row["fields"])) for i, row in zip(ids, rows, strict=True)],
                )
        else:
            if index:
                sql = self._indexed
                params = [
                    (*values, search_text(row["fields"]))
                    for values, row in zip(params, rows, strict=True)
                ]
            else:
                sql = self._submissions
            # psycopg sends them in one pipeline and keeps each result, in order.
            cursor.executemany(sql, params, returning=True)
            while True:
                ids.append(int(cursor.fetchone()[0]))
                if not cursor.nextset():
                    break
        self._record_field_names(
            [(i, row["form_id"], row["fields"]) for i, row in zip(ids, rows, strict=True)]
        )
        return ids

    def insert_deliveries(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.connection.cursor().executemany(
                self._deliveries, [self._values(row, DELIVERY_COLUMNS) for row in rows]
            )

    def insert_attachments(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.connection.cursor().executemany(
                self._attachments, [self._values(row, ATTACHMENT_COLUMNS) for row in rows]
            )

    def _record_field_names(self, submissions: list[tuple[int, int, Sequence[Any]]]) -> None:
        first = field_names.first_positions(submissions)
        if not first:
            return
        cursor = self.connection.cursor()
        if self.sqlite:
            cursor.executemany(
                field_names.SQLITE_INSERT, [(f, n, p) for (f, n), p in first.items()]
            )
            return
        missing = [key for key in first if not field_names.known(key)]
        if not missing:
            return
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
_CONVERTED = _JSON | {"created_at", "updated_at", "next_attempt_at"}


def _jsonb(value: Any) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value, dumps=_json_text)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()
