"""Engine settings per database: durable SQLite, resilient PostgreSQL connections."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from sqlalchemy.util import immutabledict

from .extensions import db
from .settings import Settings

# Failures of the database itself (down, restarting, disk full, locked, no connection in the
# pool), as opposed to a statement it refused.
DATABASE_AWAY = (OperationalError, InterfaceError, PoolTimeoutError)


def database_away(exc: BaseException, dbapi: Any) -> bool:
    """Whether `exc`, from SQLAlchemy or from the driver module `dbapi` itself, is a
    failure of the database rather than a statement it refused."""
    return isinstance(exc, (*DATABASE_AWAY, dbapi.OperationalError, dbapi.InterfaceError))


def init_app(app: Flask, settings: Settings) -> None:
    """Bind Flask-SQLAlchemy's `db` to the app's database."""
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings),
    )
    db.init_app(app)


def engine_options(settings: Settings) -> dict[str, Any]:
    if settings.database_url.startswith("sqlite"):
        # The driver's own transaction handling is off so that a writer can start with
        # BEGIN IMMEDIATE (see begin_write). The timeout is how long a writer waits for
        # another's lock before the database counts as unavailable.
        return {"connect_args": {"isolation_level": None, "timeout": settings.sqlite_busy_timeout}}
    # A restarted PostgreSQL leaves dead pooled connections: test each before use.
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10}


def worker_engine(url: Any, settings: Settings) -> Engine:
    """The `formrelay worker` process's own engine on SQLite, whose commits do not wait for
    the disk (synchronous=NORMAL, in WAL mode).

    What the worker writes is claims, outcomes and heartbeats. Each of its commits held the
    machine's write lock through an fsync, one per message sent, while group commit waited
    behind it: with the worker draining beside it, ingest reached 2,130 submissions/s with
    those commits waiting for the disk and 2,530 without (SQLite, two rounds each). A
    power cut (not a crash: the system has the data) may lose the worker's last fraction
    of a second of writes: a delivery then goes back to pending and is sent again, the
    at-least-once it is after a kill -9 too. A submission is never at stake: group
    commit's commits wait for the disk, and carry the log written before them. (On
    PostgreSQL, synchronous_commit=off for the worker made no difference: 1,690 against
    1,710; it keeps the app's engine.) `url` is the app's engine's: Flask-SQLAlchemy
    resolves a relative SQLite path.
    """
    from sqlalchemy import create_engine

    engine = create_engine(url, **engine_options(settings))
    event.listen(engine, "connect", _worker_sqlite_pragmas)
    return engine


def _worker_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # After _sqlite_pragmas (class listeners run first): only the synchronous level differs.
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged submission survives power loss, not just a crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


WRITE_OPTION = "formrelay_write"


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer.

    On SQLite a deferred transaction that reads and then writes fails at once with
    "database is locked" when another writer committed in between; a writer that takes the
    lock up front (BEGIN IMMEDIATE) waits its turn instead, for up to
    FORMRELAY_SQLITE_BUSY_TIMEOUT. Readers stay deferred, so they never block writers.
    Elsewhere this only starts the transaction. A transaction already open is left as it is.
    """
    if session.in_transaction():
        return
    _take_writer_lock(session)
    try:
        session.connection(execution_options={WRITE_OPTION: True})
    except BaseException:
        _release_writer_lock(session)
        raise


def write_from_start(session: Session, writes: bool = True) -> None:
    """Make each transaction the session begins from now on a writer's (see begin_write),
    at its first statement: for a unit of work that will write, such as a dashboard form
    posted. With `writes` false, the session's transactions are as they were before."""
    options = {k: v for k, v in session.execution_options.items() if k != WRITE_OPTION}
    session.execution_options = immutabledict(options, **({WRITE_OPTION: True} if writes else {}))


def read_first(session: Session) -> None:
    """End the session's transaction, and begin the next ones as a reader's: for a unit of
    work that reads and thinks a while (a password hash) before it knows it will write,
    which then calls begin_write. The write lock is not held while it thinks."""
    session.commit()
    write_from_start(session, False)


def locks_whole_database(session: Session) -> bool:
    """Whether a writer locks the whole database (SQLite) rather than the rows it writes."""
    return session.get_bind().dialect.name == "sqlite"


class WriterLock:
    """Queues this machine's SQLite writers in the kernel rather than in SQLite's busy loop.

    SQLite's busy handler polls with sleeps of up to 100 ms, so writers in several processes
    (web workers, the delivery worker) wait far longer than the lock is held. An flock() on
    a file beside the database wakes the next writer as soon as the lock is released; a
    thread lock comes first because flock() does not exclude threads sharing one file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def acquire(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None or os.getpid() != self._pid:  # reopen after a fork
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


_LOCK_KEY = "formrelay_writer_lock"
_writer_locks: dict[str, WriterLock] = {}
_writer_locks_guard = threading.Lock()


def _take_writer_lock(session: Session) -> None:
    if _LOCK_KEY in session.info:
        return
    lock = writer_lock(session.get_bind().engine)
    if lock is not None:
        lock.acquire()
        session.info[_LOCK_KEY] = lock


def writer_lock(engine: Engine) -> WriterLock | None:
    """The machine-wide queue of this SQLite database's writers; None on other databases."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    path = os.path.abspath(database) + ".writer-lock"
    with _writer_locks_guard:
        return _writer_locks.setdefault(path, WriterLock(path))


def _release_writer_lock(session: Session) -> None:
    lock = session.info.pop(_LOCK_KEY, None)
    if lock is not None:
        lock.release()


@event.listens_for(Session, "after_transaction_create")
def _start_of_write(session: Session, transaction: Any) -> None:
    # A session marked by write_from_start queues for the machine's write lock before its
    # BEGIN IMMEDIATE, as begin_write does.
    if transaction.parent is None and session.execution_options.get(WRITE_OPTION):
        _take_writer_lock(session)


@event.listens_for(Session, "after_commit", insert=True)
def _committed(session: Session) -> None:
    # Before the other after-commit listeners: telling the machine's committer that forms
    # changed waits for its answer, and it may be waiting for this very lock.
    _release_writer_lock(session)


@event.listens_for(Session, "after_transaction_end")
def _end_of_write(session: Session, transaction: Any) -> None:
    # After the commit or rollback itself, so the next writer starts on committed data.
    if transaction.parent is None:
        _release_writer_lock(session)


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn: Any) -> None:
    # The driver's own BEGIN is off (isolation_level=None); we say which kind we want.
    if conn.dialect.name == "sqlite":
        immediate = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
