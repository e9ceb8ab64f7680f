"""The field names each form has received: the columns of its CSV export.

A CSV header must name every field before the first row. Finding them by reading every
submission first cost a million-row export 6-28 s before its first byte (measured on
SQLite, bench/dashboard.py), so the names are kept as they arrive instead: `record` runs
in the transaction that stores submissions (search.insert_submissions, which ingest and
imports use). Migration 0006 filled the table from the submissions stored before it.

A name stays when the submissions that carried it are deleted: the column is then empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Select, select, text, tuple_
from sqlalchemy.orm import Session

from ..models import FormField

# A field's position is its first submission's id times this plus its index there; the
# fields a submission may carry (settings.max_fields) are far fewer.
FIELD_SLOTS = 10_000

# As the driver's own statement: SQLAlchemy's executemany cost three times as much (50 us).
SQLITE_INSERT = "INSERT OR IGNORE INTO form_fields (form_id, name, position) VALUES (?, ?, ?)"
# One statement with the rows as three arrays, in key order: two transactions adding the
# same new names take their locks in the same order, so they cannot deadlock.
_POSTGRESQL_INSERT = text(
    "INSERT INTO form_fields (form_id, name, position)"
    " SELECT * FROM unnest(CAST(:form_ids AS integer[]), CAST(:names AS text[]),"
    " CAST(:positions AS bigint[])) ON CONFLICT DO NOTHING"
)

# The same two in psycopg's notation, for group commit's own connection (outbox_sql).
DRIVER_INSERT = (
    "INSERT INTO form_fields (form_id, name, position)"
    " SELECT * FROM unnest(%s::integer[], %s::text[], %s::bigint[]) ON CONFLICT DO NOTHING"
)
DRIVER_STORED = (
    "SELECT form_id, name FROM form_fields"
    " JOIN unnest(%s::integer[], %s::text[]) AS m(f, n) ON form_id = m.f AND name = m.n"
)

# PostgreSQL: the (form id, name) pairs this process has seen committed. A form's names
# only grow, and ids come from a sequence, never used twice: a pair seen once stays true
# (until its form is deleted, when no submission names that form again). So a group commit
# whose names are all known sends nothing: a statement of its own cost each batch a round
# trip, 0.2-0.9 ms of a 3.5 ms commit (measured). SQLite may give a deleted form's id to the
# next one, so it keeps no such memory; its statement costs it about 15 us, in-process.
_committed: set[tuple[int, str]] = set()
_REMEMBERED_AT_MOST = 100_000
# The pairs a connection's open transaction added, not committed yet: (that transaction,
# the pairs) in connection.info, true only while it is the connection's transaction. (No
# commit or rollback listener: one that touched a connection lost under it reconnected
# it in the middle of the worker's error handling.)
_ADDED = "formrelay_field_names_added"


def record(
    connection: Connection, submissions: Iterable[tuple[int, int, Sequence[Sequence[Any]]]]
) -> None:
    """Add the names these just-stored submissions (id, form id, fields) bring to their
    forms' lists, in this transaction; names a form has already are left as they are."""
    first = first_positions(submissions)
    if not first:
        return
    if connection.dialect.name != "postgresql":
        connection.exec_driver_sql(SQLITE_INSERT, [(f, n, p) for (f, n), p in first.items()])
        return
    missing = [key for key in first if key not in _committed]
    if not missing:
        return
    transaction = connection.get_transaction()
    held = connection.info.get(_ADDED)
    if held is None or held[0] is not transaction:
        held = (transaction, set())
        connection.info[_ADDED] = held
    added: set[tuple[int, str]] = held[1]
    # Which of them other transactions committed already: what this one added is not.
    stored = connection.execute(
        select(FormField.form_id, FormField.name).where(
            tuple_(FormField.form_id, FormField.name).in_(missing)
        )
    )
    if len(_committed) > _REMEMBERED_AT_MOST:
        _committed.clear()
    _committed.update((f, n) for f, n in stored if (f, n) not in added)
    new = sorted(key for key in missing if key not in _committed and key not in added)
    if new:
        connection.execute(
            _POSTGRESQL_INSERT,
            {
                "form_ids": [form_id for form_id, _ in new],
                "names": [name for _, name in new],
                "positions": [first[key] for key in new],
            },
        )
        added.update(new)


def first_positions(
    submissions: Iterable[tuple[int, int, Sequence[Sequence[Any]]]],
) -> dict[tuple[int, str], int]:
    """Each (form id, name) these submissions carry, with its position where it first came."""
    first: dict[tuple[int, str], int] = {}
    for submission_id, form_id, fields in submissions:
        base = submission_id * FIELD_SLOTS
        for index, pair in enumerate(fields):
            key = (form_id, str(pair[0]))
            if key not in first:
                first[key] = base + index
    return first


def known(pair: tuple[int, str]) -> bool:
    """Whether this process has seen the pair committed (PostgreSQL)."""
    return pair in _committed


def remember(pairs: Iterable[tuple[int, str]]) -> None:
    """Pairs seen committed: by another transaction, or by the caller's once it committed."""
    if len(_committed) > _REMEMBERED_AT_MOST:
        _committed.clear()
    _committed.update(pairs)


def forget() -> None:
    """Forget the pairs seen committed: for a database emptied under a running process
    (the tests', whose ids then start again)."""
    _committed.clear()


def listed(form_ids: Select[Any] | Sequence[int] | None) -> Select[Any]:
    """The query for the names of these forms (all forms: None), in the order they first
    arrived (a name two forms share comes once, where it first did: see `names`)."""
    query = select(FormField.name).order_by(FormField.position)
    if form_ids is not None:
        query = query.where(FormField.form_id.in_(form_ids))
    return query


def names(session: Session, query: Select[Any]) -> list[str]:
    """The names `query` (from `listed`) selects, each once, in order."""
    return list(dict.fromkeys(session.scalars(query)))
