"""Send pacing: the workers together never send faster than the rate allowed.

Pacer spaces one process's sends; SharedPacer spaces those of every worker process on
every machine through one database row, at FORMRELAY_SEND_RATE or SES's MaxSendRate.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import cast

from sqlalchemy import Table, case, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..db import DATABASE_AWAY, begin_write
from ..models import SendRate, utcnow


class Pacer:
    """Spaces sends evenly at `rate` per second (0: no limit), e.g. for SES's MaxSendRate."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self._next = 0.0

    def wait(self, stop: threading.Event) -> None:
        """Return when the next send is allowed (or at once when `stop` is set)."""
        if not self.interval:
            return
        now = self.clock()
        if self._next > now:
            stop.wait(self._next - now)
        self._next = max(self._next, now) + self.interval


log = logging.getLogger("formrelay.worker")
# The bucket every worker shares for e-mail (one account, one MaxSendRate).
EMAIL_BUCKET = "email"
# The most send time a worker reserves at once.
BLOCK_SECONDS = 0.25
_RATES = cast(Table, SendRate.__table__)
R = _RATES.c


class SharedPacer:
    """Spaces sends across every worker process and machine at one rate, through the
    database: the `send_rates` row holds the next free slot.

    A worker reserves `recipients / rate` seconds per send from that slot forward in one
    UPDATE ... RETURNING (a row lock on PostgreSQL, the write lock on SQLite) and waits for
    its own slot, so all workers together never exceed the rate, and idle time is not saved
    up for a burst (beyond one recipient's share: a slot missed by a scheduling hiccup
    is still used). To spare a commit per message it reserves for the next few sends of its
    batch at once (`upcoming`, at most BLOCK_SECONDS of them) and spaces those itself; a
    reservation it falls more than BLOCK_SECONDS behind is dropped, not caught up. The rate
    comes from `rate_source` (FORMRELAY_SEND_RATE, or SES's MaxSendRate when lower), asked
    again every `refresh_seconds`. With the database away a worker paces itself alone (a
    Pacer) rather than stop.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        rate_source: Callable[[], float],
        *,
        refresh_seconds: float = 300.0,
        bucket: str = EMAIL_BUCKET,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.session_factory = session_factory
        self.rate_source = rate_source
        self.refresh_seconds = refresh_seconds
        self.bucket = bucket
        self.wall_clock = wall_clock
        self._rate: float | None = None
        self._rate_read_at = 0.0
        self._fallback = Pacer(0)
        # Slots reserved ahead, as (start, cost) in wall-clock seconds.
        self._prepaid: deque[tuple[float, float]] = deque()

    @property
    def rate(self) -> float:
        """The current rate (recipients a second; 0: no limit), refreshed when stale."""
        now = time.monotonic()
        if self._rate is None or now - self._rate_read_at >= self.refresh_seconds:
            self._rate = self.rate_source()
            self._rate_read_at = now
            self._fallback = Pacer(self._rate)
            if self._rate:
                log.info("sending at most %g recipients a second (all workers)", self._rate)
            else:
                log.info("sending is unlimited: no send rate is set (all workers)")
        return self._rate

    def wait(
        self, stop: threading.Event, recipients: int = 1, upcoming: Sequence[int] = ()
    ) -> float | None:
        """Return when this worker's next send of `recipients` recipients is allowed (or at
        once when `stop` is set), with the slot's wall-clock time (None: no limit, or
        paced alone). `upcoming`: the recipients of the sends that follow in the batch,
        which may be reserved with this one."""
        rate = self.rate
        if not rate:
            return None
        cost = max(recipients, 1) / rate
        now = self.wall_clock()
        slot = self._take_prepaid(cost, now)
        if slot is None:
            costs = [cost]
            for n in upcoming:
                if sum(costs) + max(n, 1) / rate > BLOCK_SECONDS:
                    break
                costs.append(max(n, 1) / rate)
            try:
                slot = self._reserve(sum(costs))
            except DATABASE_AWAY as exc:
                log.warning("send rate: the database is away, pacing alone: %s", exc)
                self._fallback.wait(stop)
                return None
            start = slot + cost
            for c in costs[1:]:
                self._prepaid.append((start, c))
                start += c
        delay = slot - self.wall_clock()
        if delay > 0:
            stop.wait(delay)
        return slot

    def _take_prepaid(self, cost: float, now: float) -> float | None:
        """The next slot reserved ahead, if it was reserved for this cost and is not stale."""
        if not self._prepaid:
            return None
        start, reserved = self._prepaid.popleft()
        if abs(reserved - cost) > 1e-9 or start < now - BLOCK_SECONDS:
            self._prepaid.clear()  # the batch went otherwise than planned: reserve afresh
            return None
        return start

    def pause(self, seconds: float) -> None:
        """Hold every worker's sends for `seconds` from now (SES said: too fast)."""
        self._prepaid.clear()
        with contextlib.suppress(*DATABASE_AWAY):
            self._reserve(seconds, hold=True)

    def _reserve(self, cost: float, *, hold: bool = False) -> float:
        """Move the shared slot forward by `cost` seconds; returns where this send's slot
        starts. With `hold`, the slot moves to at least now + cost for everyone."""
        now = self.wall_clock()
        # A slot missed by less than one recipient's share (a worker late by a scheduling
        # hiccup) is still used, so that the rate holds on a busy machine; more idle time
        # than that is not saved up. SES itself allows short bursts above MaxSendRate.
        earliest = now if hold else now - min(1.0 / self.rate, BLOCK_SECONDS)
        start = case((R.next_slot > earliest, R.next_slot), else_=earliest)
        for _ in range(2):
            with self.session_factory() as session:
                begin_write(session)
                row = session.execute(
                    update(_RATES)
                    .where(R.name == self.bucket)
                    .values(next_slot=start + cost, rate=self.rate, updated_at=utcnow())
                    .returning(R.next_slot)
                ).first()
                if row is not None:
                    session.commit()
                    return float(row[0]) - (0.0 if hold else cost)
                try:  # the first send ever: make the row (another worker may at once)
                    session.execute(
                        insert(_RATES).values(
                            name=self.bucket,
                            next_slot=now + cost,
                            rate=self.rate,
                            updated_at=utcnow(),
                        )
                    )
                    session.commit()
                    return now
                except IntegrityError:
                    session.rollback()
        raise RuntimeError("the send_rates row could be neither updated nor made")
