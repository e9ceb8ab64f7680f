"""The field names each form has received: the columns of its CSV export.

A CSV header must name every field before the first row. Finding them by reading every
submission first cost a million-row export 6-28 s before its first byte (measured on
SQLite, bench/dashboard.py), so the names are kept as they arrive instead: `record` runs
in the transaction that stores submissions (search.insert_submissions, which ingest and
imports use), and costs one small statement per batch; on PostgreSQL a statement trigger
does the same within the submissions' INSERT. Migration 0006 filled the table from the
submissions stored before it.

A name stays when the submissions that carried it are deleted: the column is then empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from ..models import FormField

# A field's position is its first submission's id times this plus its index there; the
# fields a submission may carry (settings.max_fields) are far fewer.
FIELD_SLOTS = 10_000

_TABLE = cast(Table, FormField.__table__)
_SQLITE_INSERT = sqlite.insert(_TABLE).on_conflict_do_nothing()


def record(
    connection: Connection, submissions: Iterable[tuple[int, int, Sequence[Sequence[Any]]]]
) -> None:
    """Add the names these just-stored submissions (id, form id, fields) bring to their
    forms' lists, in this transaction; names a form has already are left as they are.

    On PostgreSQL a statement trigger on submissions does this (migration 0006) within the
    INSERT itself: a statement of our own cost each group commit a round trip, 0.2-0.9 ms of
    its 3.5 (measured). On SQLite a trigger would parse every row's JSON again; here one
    small statement a batch costs 50 us."""
    if connection.dialect.name == "postgresql":
        return
    first: dict[tuple[int, str], int] = {}
    for submission_id, form_id, fields in submissions:
        base = submission_id * FIELD_SLOTS
        for index, pair in enumerate(fields):
            key = (form_id, str(pair[0]))
            if key not in first:
                first[key] = base + index
    if not first:
        return
    rows = [{"form_id": f, "name": n, "position": p} for (f, n), p in first.items()]
    connection.execute(_SQLITE_INSERT, rows)


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
