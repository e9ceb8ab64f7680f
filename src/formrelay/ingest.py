"""Group commit: concurrent submissions in one process share one transaction and one fsync.

A durable commit costs an fsync (SQLite synchronous=FULL) or a WAL flush (PostgreSQL
synchronous_commit=on), and that cost, not Python, bounds how many submissions a second
can be acknowledged. Request threads queue their validated submission and wait; a committer
thread stores everything queued so far in one transaction. No request is answered before
the transaction holding its submission has committed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from .db import database_away, writer_lock
from .extensions import db
from .services import field_names
from .services.counters import SharedCounters
from .services.errors import DomainError, FormDisabled, FormNotFound
from .services.outbox import (
    FORMS_CHANGED,
    NotificationCeilings,
    StoredSubmission,
    TargetCache,
    store_submissions,
)
from .services.outbox_sql import DriverWriter
from .services.rate_limits import Counted, check_many
from .services.submissions import PreparedSubmission
from .settings import get_settings

log = logging.getLogger("formrelay.ingest")
_EXTENSION = "formrelay.ingest"


def init_app(app: Flask) -> None:
    """Give the app its group commit, on the app's database engine."""
    with app.app_context():
        settings = get_settings(app)
        # Counted only for forms with a ceiling: with none set anywhere, nothing is counted.
        counters = SharedCounters(settings.ratelimit_storage_uri)
        ceilings = NotificationCeilings(
            counters,
            settings.notify_limit_per_form,
            settings.notify_limit_global,
        )
        group = GroupCommit(
            db.engine,
            search_index=settings.search_index,
            ceilings=ceilings,
            counters=counters,
        )
        url = db.engine.url
        if settings.committer == "process" and url.database not in (None, "", ":memory:"):
            from .committer import RemoteCommitter

            # The URL as the engine resolved it (a relative SQLite path, made absolute).
            database = url.render_as_string(hide_password=False)
            group.remote = RemoteCommitter(settings, database, GroupCommit.WAIT_SECONDS)
        app.extensions[_EXTENSION] = group


@event.listens_for(Session, "after_commit")
def _forms_committed(session: Session) -> None:
    if session.info.pop(FORMS_CHANGED, False) and has_app_context():
        group = current_app.extensions.get(_EXTENSION)
        if group is not None:
            group.forms_changed()


@event.listens_for(Session, "after_rollback")
def _forms_rolled_back(session: Session) -> None:
    session.info.pop(FORMS_CHANGED, None)


def group_commit(app: Flask | None = None) -> GroupCommit:
    """The GroupCommit of `app`, or of the current app."""
    found: GroupCommit = (app or current_app).extensions[_EXTENSION]
    return found


class StorageUnavailable(Exception):
    """The transaction holding a submission failed; nothing of it was stored."""


class CommitTimedOut(StorageUnavailable):
    """The committer did not answer in time: the submission may yet be stored."""


@dataclass
class _Item:
    key: str
    prepared: PreparedSubmission | None  # None: a notice that forms changed
    counted: Counted | None = None  # its rate limits' windows, counted just before storing
    done: threading.Event = field(default_factory=threading.Event)
    result: StoredSubmission | Exception | None = None


class GroupCommit:
    """One committer thread per process stores whatever the request threads have queued.

    While it waits for the disk, more submissions queue up, so batches grow with the load
    by themselves and an idle server commits each submission at once. (A leader taken from
    the request threads made batches of one: the thread just answered holds the GIL and
    takes the lock again before the waiting threads have run.)
    """

    # A request never waits for ever, even should the committer be stuck on the database.
    WAIT_SECONDS = 60.0
    # An idle committer gives its connection back to the pool after this long.
    IDLE_SECONDS = 2.0

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 256,
        search_index: bool = True,
        ceilings: NotificationCeilings | None = None,
        counters: SharedCounters | None = None,
    ) -> None:
        self.engine = engine
        self.counters = counters
        self.sqlite = engine.dialect.name == "sqlite"
        self.dbapi: Any = engine.dialect.dbapi  # the driver's module: its errors
        self.writer_lock = writer_lock(engine)
        self.ceilings = ceilings
        self.search_index = search_index
        self.max_batch = max_batch
        self._queue: list[_Item] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._listeners: list[Callable[[], None]] = []
        # The committer's own connection, kept while there is work (statements prepared
        # once), closed after IDLE_SECONDS without, and when the database went away under it.
        self._connection: PoolProxiedConnection | None = None
        self._targets = TargetCache()
        self._using = threading.Lock()  # the connection: by the committer, or by close()
        # The machine's committer process (formrelay.committer), when this one forwards.
        self.remote: Any = None

    def after_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` (in the committer thread) after each batch that stored something:
        `formrelay serve` wakes its in-process worker this way."""
        self._listeners.append(listener)

    def accept(
        self, key: str, prepared: PreparedSubmission, counted: Counted | None = None
    ) -> StoredSubmission:
        """Store the submission for the form with this key and commit; blocks until durable.

        With `counted`, it is first counted in its rate limits' windows, with the rest of
        its batch in one call to the counters (services.rate_limits.check_many).

        Raises RateLimited, FormNotFound or FormDisabled, StorageUnavailable when the
        database could not commit.
        """
        item = _Item(key, prepared, counted)
        with self._ready:
            self._ensure_committer()
            self._queue.append(item)
            self._ready.notify()
        if not item.done.wait(self.WAIT_SECONDS):
            raise CommitTimedOut("the database did not commit in time")
        if isinstance(item.result, StoredSubmission):
            return item.result
        assert item.result is not None
        raise item.result

    def start(self) -> None:
        """Start the machine's committer process, when submissions go to one and none runs."""
        if self.remote is not None:
            self.remote.start()

    def forms_changed(self) -> None:
        """Forms this process changed have committed: with the machine's committer, tell it
        before the change is answered, so that the next submission anywhere on this machine
        reads them again. (Without, the process's own cache reads its changes anyway.)"""
        if self.remote is None:
            return
        item = _Item("", None)
        with self._ready:
            self._ensure_committer()
            self._queue.append(item)
            self._ready.notify()
        item.done.wait(self.WAIT_SECONDS)

    def _ensure_committer(self) -> None:
        # Started on first use, and again in a forked child, where threads do not survive.
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="formrelay-group-commit", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    idle = self.IDLE_SECONDS if self._connection is not None else None
                    if not self._ready.wait(idle):
                        with self._using:
                            self._release()
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
            self._commit(batch)

    def _notify(self) -> None:
        # After the commit: a listener's failure must neither undo an answer nor stop the
        # committer thread.
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("an after-commit listener failed")

    def close(self) -> None:
        """Close the committer's connection now (the next batch opens another): for an
        app going away, whose idle committer would otherwise keep it a while."""
        with self._using:
            self._release()
            if self.remote is not None:
                self.remote.close()

    def store_now(
        self, batch: list[tuple[str, PreparedSubmission, Counted | None]]
    ) -> list[object]:
        """Count and store `batch` in this thread, as the committer thread would: for the
        machine's committer process. Each result is a StoredSubmission or the exception to
        raise (one a web process can rebuild: a bug of ours answers 500 there, logged here)."""
        items = [_Item(key, prepared, counted) for key, prepared, counted in batch]
        to_store = self._count(items)
        if to_store:
            self._commit_here(to_store)  # (their events are nobody's)
        results: list[object] = []
        for item in items:
            result = item.result
            if isinstance(result, Exception) and not isinstance(
                result, DomainError | StorageUnavailable
            ):
                log.error("storing a submission failed", exc_info=result)
                result = RuntimeError(f"the committer failed: {result!r}")
            results.append(result)
        return results

    def _commit(self, queued: list[_Item]) -> None:
        batch = [i for i in queued if i.prepared is not None]
        try:
            if batch and self.remote is not None and self._counts_in_memory:
                batch = self._count_before_forwarding(batch)
                if not batch:  # every one past its limit: nothing to store
                    return
            forwarded = self.remote is not None and self._forward(batch)
            if batch and not forwarded:
                to_store = self._count(batch)
                if to_store:
                    self._commit_here(to_store)
        except Exception as exc:  # a bug of ours: those waiting answer 500; the thread goes on
            log.exception("group commit failed for %d submissions", len(batch))
            for item in batch:
                if item.result is None:
                    item.result = exc
        finally:
            for item in queued:
                item.done.set()

    @property
    def _counts_in_memory(self) -> bool:
        return self.counters is not None and self.counters.per_process

    def _count_before_forwarding(self, batch: list[_Item]) -> list[_Item]:
        """Count the batch here, in this process's memory, and leave the committer nothing
        to count: the counts then live where this process's other posts are counted
        (those refused, those with files) and where its batches are counted whenever the
        committer is not up (starting, restarting), so a limit of N admits N. Returns
        the submissions to store."""
        to_store = self._count(batch)
        for item in to_store:
            item.counted = None
        return to_store

    def _forward(self, batch: list[_Item]) -> bool:
        """Hand the batch to the machine's committer; False when none took it."""
        from .committer import Unanswered

        if not batch:
            self.remote.forms_changed()
            return True
        try:
            results = self.remote.store([(i.key, i.prepared, i.counted) for i in batch])
        except Unanswered as exc:
            log.error("the committer took %d submissions and did not answer: %s", len(batch), exc)
            for item in batch:
                item.result = CommitTimedOut(str(exc))
            return True
        if results is None:
            return False
        for item, result in zip(batch, results, strict=True):
            item.result = result
        if any(isinstance(r, StoredSubmission) for r in results):
            self._notify()
        return True

    def _count(self, batch: list[_Item]) -> list[_Item]:
        """Count the batch's submissions in their rate limits' windows, in one call to the
        counters; those past a limit get RateLimited. Returns the others, to store."""
        limited = [i for i in batch if i.counted is not None]
        if not limited or self.counters is None:
            return batch
        try:
            verdicts = check_many(
                self.counters, [i.counted for i in limited if i.counted], alone=True
            )
        except Exception:  # a bug of ours: a limit must never lose mail
            log.exception("counting %d submissions failed; storing them uncounted", len(batch))
            return batch
        for item, verdict in zip(limited, verdicts, strict=True):
            item.result = verdict
        return [i for i in batch if i.result is None]

    def _commit_here(self, batch: list[_Item]) -> None:
        try:
            with self._using:
                results = self._store(batch)
            for item, result in zip(batch, results, strict=True):
                item.result = result
        except Exception as exc:
            away = database_away(exc, self.dbapi)
            if len(batch) > 1 and not away:
                # The database (or its driver, binding a value) refused one submission's
                # data, most likely: that one must not take down the others that arrived
                # with it. (A failure of the database itself, one by one, would only fail
                # each again.)
                log.warning("storing %d submissions failed, now one by one: %s", len(batch), exc)
                for item in batch:
                    self._commit_here([item])
                return
            if away or isinstance(exc, SQLAlchemyError | self.dbapi.Error):
                log.error("storing %d submissions failed: %s", len(batch), exc)
                for item in batch:
                    item.result = StorageUnavailable(str(exc))
            else:  # a bug of ours: the waiting request answers 500, logged
                for item in batch:
                    item.result = exc
        else:
            if any(isinstance(r, StoredSubmission) for r in results):
                self._notify()
        finally:
            for item in batch:
                item.done.set()

    def _store(self, batch: list[_Item]) -> list[StoredSubmission | Exception]:
        """One transaction on the committer's connection: the batch's forms, then the
        submissions and their deliveries, committed."""
        if self._connection is None:
            # Outside the pool: the committer alone uses it, and closes it when it is done.
            self._connection = self.engine.raw_connection()
            self._connection.detach()
        connection: Any = self._connection.dbapi_connection
        writer = DriverWriter(connection, self.engine.dialect.name)
        keys = {i.key for i in batch}
        began = locked = False

        def begin() -> None:
            # SQLite's write lock, machine-wide, once the rows are ready (see
            # store_submissions); PostgreSQL's transaction began with the forms' read.
            nonlocal began, locked
            if self.writer_lock is not None:
                self.writer_lock.acquire()
                locked = True
            connection.execute("BEGIN IMMEDIATE")
            began = True

        try:
            # Mostly from the cache. What is read is read before SQLite's write lock is
            # taken (every statement under it delays all writers; the driver autocommits a
            # lone read); on PostgreSQL in the transaction, one round trip fewer.
            targets = self._targets.targets(writer, keys)
            results: list[StoredSubmission | Exception] = list(
                store_submissions(
                    writer,
                    [(i.key, i.prepared) for i in batch if i.prepared is not None],
                    targets,
                    search_index=self.search_index,
                    ceilings=self.ceilings,
                    begin=begin if self.sqlite else None,
                )
            )
            if not self.sqlite:
                connection.commit()
            elif began:
                connection.execute("COMMIT")
        except BaseException as exc:
            self._abandon(exc)
            raise
        finally:
            if locked:
                assert self.writer_lock is not None
                self.writer_lock.release()
        field_names.remember(writer.new_field_names)
        # A form found disabled or gone by the INSERT: read it again next time.
        self._targets.forget(
            i.key
            for i, r in zip(batch, results, strict=True)
            if isinstance(r, FormNotFound | FormDisabled)
        )
        return results

    def _release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()  # detached: the driver's connection closes
            except Exception:
                log.warning("closing the committer's connection failed", exc_info=True)
            self._connection = None

    def _abandon(self, exc: BaseException) -> None:
        """Roll the failed transaction back; a connection the database went away under (or
        that cannot roll back) is dropped, and the next batch takes a new one."""
        assert self._connection is not None
        try:
            if database_away(exc, self.dbapi):
                raise exc
            connection: Any = self._connection.dbapi_connection
            if not self.sqlite:
                connection.rollback()
            elif connection.in_transaction:
                connection.execute("ROLLBACK")
        except BaseException:
            self._release()
