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

from flask import Flask, current_app
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from .db import DATABASE_AWAY, begin_write, locks_whole_database
from .extensions import db
from .services.counters import SharedCounters
from .services.outbox import (
    NotificationCeilings,
    StoredSubmission,
    load_targets,
    store_submissions,
)
from .services.submissions import PreparedSubmission
from .settings import get_settings

log = logging.getLogger("formrelay.ingest")
_EXTENSION = "formrelay.ingest"


def init_app(app: Flask) -> None:
    """Give the app its group commit, on the app's database engine."""
    with app.app_context():
        settings = get_settings(app)
        # Counted only for forms with a ceiling: with none set anywhere, nothing is counted.
        ceilings = NotificationCeilings(
            SharedCounters(settings.ratelimit_storage_uri),
            settings.notify_limit_per_form,
            settings.notify_limit_global,
        )
        app.extensions[_EXTENSION] = GroupCommit(
            sessionmaker(bind=db.engine), search_index=settings.search_index, ceilings=ceilings
        )


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
    prepared: PreparedSubmission
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

    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        max_batch: int = 256,
        search_index: bool = True,
        ceilings: NotificationCeilings | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.ceilings = ceilings
        self.search_index = search_index
        self.max_batch = max_batch
        self._queue: list[_Item] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._listeners: list[Callable[[], None]] = []

    def after_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` (in the committer thread) after each batch that stored something:
        `formrelay serve` wakes its in-process worker this way."""
        self._listeners.append(listener)

    def accept(self, key: str, prepared: PreparedSubmission) -> StoredSubmission:
        """Store the submission for the form with this key and commit; blocks until durable.

        Raises FormNotFound or FormDisabled for the form, StorageUnavailable when the
        database could not commit.
        """
        item = _Item(key, prepared)
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
                    self._ready.wait()
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

    def _commit(self, batch: list[_Item]) -> None:
        try:
            with self.session_factory() as session:
                keys = {i.key for i in batch}
                if locks_whole_database(session):
                    # SQLite: every statement under the write lock delays all writers, so the
                    # forms are read before it is taken.
                    targets = load_targets(session, keys)
                    session.commit()
                    begin_write(session)
                else:  # one transaction, one connection: fewer round trips
                    begin_write(session)
                    targets = load_targets(session, keys)
                results = store_submissions(
                    session,
                    [(i.key, i.prepared) for i in batch],
                    targets,
                    search_index=self.search_index,
                    ceilings=self.ceilings,
                )
                session.commit()
            for item, result in zip(batch, results, strict=True):
                item.result = result
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, DATABASE_AWAY):
                # The database (or its driver, binding a value) refused one submission's
                # data, most likely: that one must not take down the others that arrived
                # with it. (A failure of the database itself, one by one, would only fail
                # each again.)
                log.warning("storing %d submissions failed, now one by one: %s", len(batch), exc)
                for item in batch:
                    self._commit([item])
                return
            if isinstance(exc, SQLAlchemyError):
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
