"""Full-text search over submissions' field values: the index, and the query language.

SQLite keeps an FTS5 table, `submissions_fts` (rowid = the submission's id); PostgreSQL a
`tsvector` column, `submissions.search_vector` ('simple' configuration: no stemming, no
stop words, so that names and addresses match as typed) with a GIN index. Migration 0004
makes and backfills both. Ingest writes the entries in the transaction that stores the
submissions (`insert_submissions`: on PostgreSQL the vector is part of the row's own
INSERT; `index_submissions` for rows the ORM inserted). Deleting a submission removes its
entry: a trigger on SQLite, the row itself on PostgreSQL.

Both sides index the same text: each value reduced to its words (letters and digits,
lower-cased), so `ann@example.org` is the words `ann example org` and the query
`ann@example.org` the phrase made of them, on either database.

The user's query never reaches the database as syntax. It is split into terms: words,
"quoted phrases" and prefixes (`word*`), each reduced to its words again and rebuilt as
FTS5 strings or tsquery lexemes; terms are ANDed. A query with no words in it (empty, all
punctuation) filters nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Boolean

from ..models import Submission

FTS_TABLE = "submissions_fts"
VECTOR_COLUMN = "search_vector"
# Words: letters and digits. The underscore is punctuation to both FTS5's unicode61
# tokenizer and PostgreSQL's parser, so it is here too.
_WORD = re.compile(r"[^\W_]+")
# A "phrase" (its closing quote may be missing) or a run of anything else but spaces.
_TERM = re.compile(r'"([^"]*)"?|([^\s"]+)')
MAX_QUERY_CHARS = 500
MAX_TERMS = 16

_SUBMISSIONS = cast(Table, Submission.__table__)
_search_metadata = MetaData()
# Not in the models' metadata: made by migration 0004 on SQLite only.
FTS = Table(
    FTS_TABLE, _search_metadata, Column("rowid", Integer, primary_key=True), Column("body", Text)
)
# The submissions table as PostgreSQL has it, with the column the models leave out (it
# exists on PostgreSQL only).
_PG_SUBMISSIONS = Table(
    _SUBMISSIONS.name,
    _search_metadata,
    *(Column(c.name, c.type, primary_key=c.primary_key) for c in _SUBMISSIONS.c),
    Column(VECTOR_COLUMN, TSVECTOR),
)
_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")
_INSERT_FTS = insert(FTS)


def words(text: str) -> list[str]:
    """The words of `text` as the index keeps them: letters and digits, lower-cased."""
    return _WORD.findall(text.lower())


def search_text(fields: Iterable[Sequence[str]]) -> str:
    """What the index holds of a submission: its values' words, one line per value."""
    return "\n".join(" ".join(words(str(pair[1]))) for pair in fields if len(pair) > 1)


@dataclass(frozen=True)
class Term:
    """One term of a query: its words (more than one: a phrase) and whether the last one
    is a prefix."""

    words: tuple[str, ...]
    prefix: bool = False


def parse_query(q: str) -> list[Term]:
    """The terms of a search box's text; none when it holds no words."""
    terms: list[Term] = []
    for match in _TERM.finditer(q[:MAX_QUERY_CHARS]):
        phrase, word = match.groups()
        found = tuple(words(phrase if phrase is not None else word))
        if found:
            terms.append(Term(found, prefix=word is not None and word.endswith("*")))
    return terms[:MAX_TERMS]


def fts5_query(terms: Sequence[Term]) -> str:
    """FTS5 MATCH syntax for `terms`: each one a quoted string (a word holds no quote), a
    trailing `*` for a prefix, ANDed."""
    return " AND ".join(f'"{" ".join(t.words)}"' + (" *" if t.prefix else "") for t in terms)


def tsquery(terms: Sequence[Term]) -> str:
    """to_tsquery syntax for `terms`: quoted lexemes, `<->` within a phrase, `:*` for a
    prefix, `&` between terms."""
    parts = []
    for t in terms:
        lexemes = [f"'{w}'" for w in t.words]
        if t.prefix:
            lexemes[-1] += ":*"
        parts.append("(" + " <-> ".join(lexemes) + ")")
    return " & ".join(parts)


class Matches(ColumnElement[bool]):
    """`submissions matching the terms`, written for the database it runs on (so that one
    Select serves both)."""

    type = Boolean()
    inherit_cache = False  # the query text is part of the SQL built below, per dialect

    def __init__(self, terms: Sequence[Term]) -> None:
        self.terms = tuple(terms)


@compiles(Matches, "sqlite")
def _matches_sqlite(element: Matches, compiler: SQLCompiler, **kw: Any) -> str:
    fts_rows = select(FTS.c.rowid).where(
        literal_column(FTS_TABLE).op("MATCH")(bindparam("fts_query", fts5_query(element.terms)))
    )
    return compiler.process(_SUBMISSIONS.c.id.in_(fts_rows), **kw)


@compiles(Matches, "postgresql")
def _matches_postgresql(element: Matches, compiler: SQLCompiler, **kw: Any) -> str:
    query = func.to_tsquery(_SIMPLE, bindparam("ts_query", tsquery(element.terms)))
    return compiler.process(literal_column(f"submissions.{VECTOR_COLUMN}").op("@@")(query), **kw)


def matching(q: str) -> ColumnElement[bool] | None:
    """A WHERE clause for the submissions whose values match `q`; None when `q` has no words
    (no filter)."""
    terms = parse_query(q)
    return Matches(terms) if terms else None


# SQLite: a query matching at most this many submissions is looked up by their ids; one
# matching more, by walking the list's index in order and keeping the matches (see narrowed).
PROBE_LIMIT = 1000


@dataclass(frozen=True)
class Narrowing:
    """A search's WHERE clause planned for one page; `by_ids` when it lists the matches'
    ids, which the page must then be read by (their primary keys), not by a list's index."""

    clause: ColumnElement[bool]
    by_ids: bool = False


def narrowed(session: Session, q: str) -> Narrowing | None:
    """Like `matching`, planned for one page of a list; None when `q` has no words.

    SQLite's planner cannot tell a rare word from a common one: it walks the list's index
    (form, folder, time) and tests each row against the matches, which stops early for a
    common word but reads the whole form for a rare one (50 ms for a word in 117 of a
    million, measured). So the matches are counted up to PROBE_LIMIT first: below it, the
    page is looked up by their ids, a handful of primary key reads, and the caller keeps
    the list's index out of the plan (`by_ids`); above it, the word is common enough for
    the index walk to end soon. PostgreSQL's planner has the statistics to choose by
    itself."""
    terms = parse_query(q)
    if not terms:
        return None
    if session.get_bind().dialect.name != "sqlite":
        return Narrowing(Matches(terms))
    ids = session.scalars(
        select(FTS.c.rowid)
        .where(literal_column(FTS_TABLE).op("MATCH")(fts5_query(terms)))
        .limit(PROBE_LIMIT + 1)
    ).all()
    if len(ids) <= PROBE_LIMIT:
        return Narrowing(_SUBMISSIONS.c.id.in_(ids), by_ids=True)
    return Narrowing(Matches(terms))


def _insert_statement(dialect: str, index: bool) -> Any:
    if dialect == "postgresql" and index:
        # Each row's `search_text` becomes its vector within the INSERT itself.
        return (
            insert(_PG_SUBMISSIONS)
            .values({VECTOR_COLUMN: func.to_tsvector(_SIMPLE, bindparam("search_text"))})
            .returning(_PG_SUBMISSIONS.c.id, sort_by_parameter_order=True)
        )
    return insert(_SUBMISSIONS).returning(_SUBMISSIONS.c.id, sort_by_parameter_order=True)


# Built once: they run in every group commit, and building a statement costs more than
# running it.
_INSERTS = {
    (dialect, index): _insert_statement(dialect, index)
    for dialect in ("sqlite", "postgresql")
    for index in (True, False)
}


def insert_submissions(
    connection: Connection, rows: Sequence[dict[str, Any]], *, index: bool = True
) -> list[int]:
    """Insert submission rows (Core; one executemany) with, when `index`, their search
    entries in the same transaction: within the INSERT on PostgreSQL, one more executemany
    on SQLite. Returns the new ids in the rows' order. What ingest and imports use."""
    if not rows:
        return []
    dialect = connection.dialect.name
    texts = [search_text(row["fields"]) for row in rows] if index else []
    if index and dialect == "postgresql":
        rows = [{**row, "search_text": text} for row, text in zip(rows, texts, strict=True)]
    statement = _INSERTS.get((dialect, index))
    if statement is None:  # a database of another kind
        statement = _insert_statement(dialect, index)
    ids = list(connection.scalars(statement, rows).all())
    if index and dialect != "postgresql":
        index_submissions(connection, list(zip(ids, texts, strict=True)))
    return ids


def index_submissions(connection: Connection, rows: Sequence[tuple[int, str]]) -> None:
    """Add the index entries of submissions stored in this transaction: (id, search_text)
    pairs, in one statement. PostgreSQL's vectors are written with the rows themselves
    (`insert_submissions`); for rows inserted otherwise (the ORM), it sets them here."""
    if not rows:
        return
    if connection.dialect.name == "sqlite":
        connection.execute(_INSERT_FTS, [{"rowid": i, "body": text} for i, text in rows])
    elif connection.dialect.name == "postgresql":
        connection.execute(
            _PG_SUBMISSIONS.update()
            .where(_PG_SUBMISSIONS.c.id == bindparam("row_id"))
            .values({VECTOR_COLUMN: func.to_tsvector(_SIMPLE, bindparam("text"))}),
            [{"row_id": i, "text": text} for i, text in rows],
        )
