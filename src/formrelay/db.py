"""Engine settings per database: durable SQLite, resilient PostgreSQL connections."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .settings import Settings


def engine_options(settings: Settings) -> dict[str, Any]:
    if settings.database_url.startswith("sqlite"):
        # The driver's own transaction handling is off so that a writer can start with
        # BEGIN IMMEDIATE (see begin_write).
        return {"connect_args": {"isolation_level": None, "timeout": 30}}
    # A restarted PostgreSQL leaves dead pooled connections: test each before use.
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10}


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged submission survives power loss, not just a crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


WRITE_OPTION = "formrelay_write"


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer.

    On SQLite a deferred transaction that reads and then writes fails at once with
    "database is locked" when another writer committed in between; a writer that takes the
    lock up front (BEGIN IMMEDIATE) waits its turn instead. Readers stay deferred, so they
    never block writers. Elsewhere this only starts the transaction. A transaction already
    open is left as it is.
    """
    if not session.in_transaction():
        session.connection(execution_options={WRITE_OPTION: True})


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn: Any) -> None:
    # The driver's own BEGIN is off (isolation_level=None); we say which kind we want.
    if conn.dialect.name == "sqlite":
        immediate = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
