"""Worker heartbeats: each worker registers itself and beats every few seconds.

A row being sent by a worker that has stopped beating for FORMRELAY_WORKER_GRACE_SECONDS
is reclaimed at once (claims.orphaned), so a killed worker's deliveries go out seconds
after it died rather than when their lease runs out. A beat also renews the leases of what
its worker is still sending, so a slow mail server never makes another worker send the same
message. Modelled on Oban's Lifeline and Sidekiq's super_fetch.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from ..db import begin_write
from ..models import Delivery, DeliveryStatus, WorkerHeartbeat, utcnow
from ..settings import Settings

log = logging.getLogger("formrelay.worker")

_WORKERS = cast(Table, WorkerHeartbeat.__table__)
W = _WORKERS.c
_DELIVERIES = cast(Table, Delivery.__table__)
# A killed worker's row is kept this long for `formrelay worker status`, then removed.
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class WorkerIdentity:
    """Who a worker is, as its heartbeat row and its leases name it."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=utcnow)
    token: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def id(self) -> str:
        return f"{self.host[:40]}:{self.pid}:{self.token}"


def record_beat(session: Session, worker: WorkerIdentity, now: datetime) -> None:
    """Register `worker` or renew its heartbeat, in the session's write transaction."""
    # One upsert: the claim and the heartbeat thread may both register a new worker at once.
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = upsert(_WORKERS).values(
        id=worker.id,
        host=worker.host[:255],
        pid=worker.pid,
        started_at=worker.started_at,
        heartbeat_at=now,
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[W.id], set_={"heartbeat_at": statement.excluded.heartbeat_at}
        )
    )


def renew_leases(
    session: Session, worker_id: str, delivery_ids: Sequence[int], *, until: datetime
) -> None:
    """Extend the leases `worker_id` holds on these rows, the ones it is still working on
    (not committed). A row whose outcome could not be recorded (the database was away) is
    no longer among them: its lease runs out and another attempt takes it, as after a kill,
    rather than a live worker renewing it for ever."""
    if not delivery_ids:
        return
    d = _DELIVERIES.c
    session.execute(
        update(_DELIVERIES)
        .where(
            d.id.in_(list(delivery_ids)),
            d.status == DeliveryStatus.SENDING,
            d.leased_by == worker_id,
        )
        .values(lease_expires_at=until)
    )


def deregister(session: Session, worker: WorkerIdentity) -> None:
    """Remove a cleanly stopped worker's row and commit."""
    begin_write(session)
    session.execute(delete(_WORKERS).where(W.id == worker.id))
    session.commit()


class Heartbeat:
    """Beats for one worker in a thread of its own while the worker works.

    Both deadlines follow from the last time the database saw the worker alive (a beat or
    a claim), by the worker's clock: until `valid_until` no other worker can take over what
    this one holds (the shorter of the grace period and the lease), and until `lease_until`
    its leases last, so an outcome is worth recording (a message handed over and not
    recorded is sent again).
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        worker: WorkerIdentity,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.worker = worker
        self.clock = clock
        self.confirmed_at = datetime.min.replace(tzinfo=clock().tzinfo)
        # The rows the worker is working on now; it replaces the tuple, never mutates it,
        # so the beating thread reads it without a lock.
        self.holding: tuple[int, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    @property
    def lease_until(self) -> datetime:
        return self.confirmed_at + timedelta(seconds=self.settings.lease_seconds)

    @property
    def valid_until(self) -> datetime:
        grace = timedelta(seconds=self.settings.worker_grace_seconds)
        return min(self.confirmed_at + grace, self.lease_until)

    def confirmed(self, at: datetime) -> None:
        """The database has seen this worker alive at `at` (a beat or a claim)."""
        self.confirmed_at = max(self.confirmed_at, at)

    def beat(self) -> None:
        """One beat: heartbeat, lease renewal and forgetting long-dead workers, committed."""
        now = self.clock()
        with self.session_factory() as session:
            begin_write(session)
            record_beat(session, self.worker, now)
            renew_leases(
                session,
                self.worker.id,
                self.holding,
                until=now + timedelta(seconds=self.settings.lease_seconds),
            )
            session.execute(delete(_WORKERS).where(W.heartbeat_at < now - FORGET_AFTER))
            session.commit()
        self.confirmed(now)

    def start(self) -> None:
        """Beat now (so the worker is registered before it works), then every interval."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._beat_once()
        self._thread = threading.Thread(target=self._run, name="formrelay-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and deregister (once: a database away is logged, not waited for)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=10)
        try:
            with self.session_factory() as session:
                deregister(session, self.worker)
        except Exception as exc:  # the row then simply ages out of `worker status`
            log.warning("worker %s could not deregister: %s", self.worker.id, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.worker_heartbeat_seconds):
            self._beat_once()

    def _beat_once(self) -> None:
        try:
            self.beat()
        except Exception as exc:  # the database is away: the next beat tries again
            self._failures += 1
            if self._failures == 1:
                log.warning("heartbeat of worker %s failed: %s", self.worker.id, exc)
        else:
            if self._failures:
                log.info("heartbeat of worker %s recovered", self.worker.id)
            self._failures = 0
