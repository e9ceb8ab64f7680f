"""A reference for ingest: the minimal durable committer, formrelay's yardstick.

bench/reference_parse.py's parsing and validation, then formrelay's promise and nothing
more: a 2xx only once the submission and its deliveries (one per verified recipient) are
durably committed, in formrelay's own migrated tables (so with the same indexes and
triggers). One committer thread per process (started on first use, and again after a
fork) takes everything the request threads have queued, inserts it in one transaction on
one long-lived DBAPI connection, commits, then wakes each waiting request: group commit,
as formrelay's, without SQLAlchemy, the form's policy, the search index, the field names
or the limits. The form (id, recipients) is looked up once per process and cached.

SQLite through `sqlite3` with formrelay's pragmas (WAL, synchronous=FULL, busy timeout 30
s) and its writer lock (formrelay.db.WriterLock, then BEGIN IMMEDIATE), so both queue for
the write lock the same way; PostgreSQL through psycopg 3 with synchronous_commit=on. The
driver follows DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from flask import Flask, Response, jsonify, request
from psycopg.types.json import Jsonb
from sqlalchemy.engine import make_url

from bench.reference_parse import accepted, prepare, rejected
from formrelay.db import WriterLock
from formrelay.services.errors import SubmissionRejected
from formrelay.services.submissions import PreparedSubmission
from formrelay.settings import normalize_database_url

MAX_BATCH = 256  # as formrelay's GroupCommit
WAIT_SECONDS = 60.0

SUBMISSION_COLUMNS = (
    "form_id, created_at, fields, reply_to, subject, cc, remote_addr, user_agent, referrer,"
    " origin, is_spam, spam_reason"
)
DELIVERY_COLUMNS = (
    "submission_id, form_id, channel, target, cc, status, attempts, next_attempt_at,"
    " created_at, updated_at"
)


@dataclass(frozen=True)
class Form:
    id: int
    redirect_url: str | None
    recipients: tuple[str, ...]  # verified, in the order added; none if store-only


class Store(Protocol):
    def form(self, key: str) -> Form | None: ...

    def store(self, batch: Sequence[tuple[Form, PreparedSubmission]]) -> list[int]:
        """Insert the submissions with their deliveries and commit; their ids, in order."""
        ...

    def close(self) -> None: ...


FORM_SQL = "SELECT id, redirect_url, store_only FROM forms WHERE key = {p} AND enabled"
RECIPIENTS_SQL = "SELECT email FROM recipients WHERE form_id = {p} AND verified ORDER BY id"


def _form(cursor: Any, key: str, p: str) -> Form | None:
    row = cursor.execute(FORM_SQL.format(p=p), (key,)).fetchone()
    if row is None:
        return None
    emails = cursor.execute(RECIPIENTS_SQL.format(p=p), (row[0],)).fetchall()
    return Form(row[0], row[1], () if row[2] else tuple(e[0] for e in emails))


def _rows(
    form: Form, item: PreparedSubmission, now: Any, dumps: Any
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The submission's row and its deliveries' (less the submission id), as formrelay's."""
    meta = item.meta
    spam = item.spam_reason is not None
    submission = (
        form.id,
        now,
        dumps([[name, value] for name, value in item.fields]),
        item.reply_to,
        item.subject,
        dumps(list(item.cc)),
        _cap(meta.remote_addr, 64),
        _cap(meta.user_agent, 512),
        _cap(meta.referrer, 2000),
        _cap(meta.origin, 512),
        spam,
        item.spam_reason,
    )
    deliveries = [
        (form.id, "email", to, dumps(list(item.cc) if n == 0 else []), "pending", 0, now, now, now)
        for n, to in enumerate(() if spam else form.recipients)
    ]
    return submission, deliveries


def _cap(value: str | None, length: int) -> str | None:
    return value[:length] if value else None


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.lock = WriterLock(os.path.abspath(path) + ".writer-lock")

    def form(self, key: str) -> Form | None:
        return _form(self.db.cursor(), key, "?")

    def store(self, batch: Sequence[tuple[Form, PreparedSubmission]]) -> list[int]:
        # The naive UTC text SQLAlchemy writes for formrelay's UTCDateTime on SQLite.
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        rows = [_rows(form, item, now, json.dumps) for form, item in batch]
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                ids: list[int] = []
                deliveries: list[tuple[Any, ...]] = []
                for submission, its_deliveries in rows:
                    cursor = self.db.execute(
                        f"INSERT INTO submissions ({SUBMISSION_COLUMNS})"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        submission,
                    )
                    assert cursor.lastrowid is not None
                    ids.append(cursor.lastrowid)
                    deliveries += [(cursor.lastrowid, *d) for d in its_deliveries]
                self.db.executemany(
                    f"INSERT INTO deliveries ({DELIVERY_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    deliveries,
                )
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        finally:
            self.lock.release()
        return ids

    def close(self) -> None:
        self.db.close()


class PostgreSQLStore:
    def __init__(self, url: str) -> None:
        self.db = psycopg.connect(url)
        self.db.execute("SET synchronous_commit = on")
        self.db.commit()

    def form(self, key: str) -> Form | None:
        try:
            return _form(self.db.cursor(), key, "%s")
        finally:
            self.db.commit()

    def store(self, batch: Sequence[tuple[Form, PreparedSubmission]]) -> list[int]:
        now = datetime.now(UTC)
        rows = [_rows(form, item, now, Jsonb) for form, item in batch]
        try:
            with self.db.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO submissions ({SUBMISSION_COLUMNS}) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    [submission for submission, _ in rows],
                    returning=True,
                )
                ids: list[int] = []
                while True:
                    ids.append(cursor.fetchone()[0])  # type: ignore[index]
                    if not cursor.nextset():
                        break
                deliveries = [
                    (submission_id, *d)
                    for submission_id, (_, its_deliveries) in zip(ids, rows, strict=True)
                    for d in its_deliveries
                ]
                if deliveries:
                    cursor.executemany(
                        f"INSERT INTO deliveries ({DELIVERY_COLUMNS})"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        deliveries,
                    )
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise
        return ids

    def close(self) -> None:
        self.db.close()


def open_store() -> Store:
    url = make_url(normalize_database_url(os.environ.get("DATABASE_URL", ""), Path("instance")))
    if url.get_backend_name() == "sqlite":
        assert url.database
        return SQLiteStore(url.database)
    return PostgreSQLStore(url.set(drivername="postgresql").render_as_string(hide_password=False))


@dataclass
class _Item:
    key: str
    prepared: PreparedSubmission
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple[int, Form] | BaseException | None = None


class GroupCommit:
    """One committer thread per process stores whatever the request threads have queued."""

    def __init__(self) -> None:
        self._queue: list[_Item] = []
        self._ready = threading.Condition()
        self._pid = 0
        self._forms: dict[str, Form | None] = {}

    def accept(self, key: str, prepared: PreparedSubmission) -> tuple[int, Form] | None:
        """(id, form) once the submission is durably committed; None for no such form."""
        item = _Item(key, prepared)
        with self._ready:
            if self._pid != os.getpid():  # first use, or a forked child: threads are gone
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="reference-commit", daemon=True).start()
            self._queue.append(item)
            self._ready.notify()
        if not item.done.wait(WAIT_SECONDS):
            raise TimeoutError("the committer did not answer in time")
        if isinstance(item.result, BaseException):
            raise item.result
        return item.result

    def _run(self) -> None:
        store: Store | None = None
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
            try:
                if store is None:
                    store = open_store()
                for item in batch:
                    if item.key not in self._forms:
                        self._forms[item.key] = store.form(item.key)
                found = [(form, i) for i in batch if (form := self._forms[i.key]) is not None]
                ids = store.store([(form, i.prepared) for form, i in found]) if found else []
                for (form, item), submission_id in zip(found, ids, strict=True):
                    item.result = (submission_id, form)
            except Exception as exc:  # nothing of the batch is stored: each request fails
                for item in batch:
                    item.result = exc
                if store is not None:
                    store.close()
                store = None  # a new connection for the next batch
            finally:
                for item in batch:
                    item.done.set()


app = Flask(__name__)
app.register_error_handler(SubmissionRejected, rejected)
committer = GroupCommit()


@app.post("/f/<key>")
def submit(key: str) -> Response | tuple[Response, int]:
    prepared = prepare(request)
    stored = committer.accept(key, prepared)
    if stored is None:
        return jsonify({"ok": False, "error": "No such form."}), 404
    submission_id, form = stored
    return accepted(prepared, submission_id, form.redirect_url)
