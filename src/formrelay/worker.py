"""The outbox worker: claim due deliveries, send them, record each outcome, back off.

Claiming is one UPDATE ... WHERE id IN (SELECT ... [FOR UPDATE SKIP LOCKED]) RETURNING, so
any number of workers on PostgreSQL never claim a row twice, and on SQLite the single
writer makes the same statement atomic. A claim is a lease: a worker killed mid-send leaves
rows in `sending` that any worker reclaims once the lease expires.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from .db import DATABASE_AWAY, begin_write, locks_whole_database
from .delivery import DeliveryFailed, MailBackend, mail_backend
from .delivery.message import build_notification
from .models import Delivery, DeliveryStatus, Submission, utcnow
from .settings import Settings

log = logging.getLogger("formrelay.worker")

S = DeliveryStatus
# Recording stops trying this long before the lease ends, when another worker may take over.
LEASE_MARGIN = 1.0
# Core, not ORM, statements for the outbox's bookkeeping: the ORM's bulk UPDATE path took
# more of a worker's time per message than building the message did.
_DELIVERIES = cast(Table, Delivery.__table__)
_D = _DELIVERIES.c
# Every outcome with one statement, built once. Only the lease holder records: a worker
# whose lease ran out must not overwrite the row's new holder.
_RECORD = (
    update(_DELIVERIES)
    .where(
        _D.id == bindparam("b_id"),
        _D.status == S.SENDING,
        _D.lease_expires_at == bindparam("b_lease"),
    )
    .values(
        status=bindparam("b_status"),
        sent_at=bindparam("b_sent_at"),
        provider_message_id=bindparam("b_provider_id"),
        last_error=bindparam("b_error"),
        # A new time only for a retry; sent and dead rows keep theirs.
        next_attempt_at=func.coalesce(
            bindparam("b_next", type_=_D.next_attempt_at.type), _D.next_attempt_at
        ),
        lease_expires_at=None,
        updated_at=bindparam("b_now"),
    )
)


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: str
    error: str | None = None


def retry_delay(
    attempts: int, settings: Settings, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before attempt `attempts + 1`: exponential, capped, with +-20% jitter.

    The jitter never takes a delay past FORMRELAY_RETRY_MAX_DELAY_SECONDS: the maximum is one.
    """
    # The exponent stops growing long before 2**n overflows a float (FORMRELAY_MAX_ATTEMPTS
    # may be large); the cap has been reached by then anyway.
    base = settings.retry_base_seconds * 2.0 ** min(max(attempts - 1, 0), 64)
    cap = settings.retry_max_delay_seconds
    return min(min(base, cap) * (0.8 + 0.4 * rand()), cap)


def claim_due_deliveries(
    session: Session, *, limit: int, lease_seconds: float, now: datetime, max_attempts: int
) -> list[tuple[int, datetime]]:
    """Lease up to `limit` due deliveries to the caller and commit; returns (id, lease) pairs.

    A row whose lease ran out after its last allowed attempt is given up (`dead`) instead:
    a message that kills every worker sending it must not be retried for ever.
    """
    due = or_(
        and_(_D.status.in_([S.PENDING, S.FAILED]), _D.next_attempt_at <= now),
        and_(_D.status == S.SENDING, _D.lease_expires_at <= now),
    )
    candidates = select(_D.id).where(due).order_by(_D.next_attempt_at).limit(limit)
    if not locks_whole_database(session):  # PostgreSQL: workers skip each other's rows
        candidates = candidates.with_for_update(skip_locked=True)
    else:
        # SQLite has one write lock for the whole database, and a transaction that has read
        # and then writes cannot wait for it (see db.begin_write): an idle poll looks first,
        # and takes the lock only when there is something to claim.
        nothing_due = session.scalar(select(_D.id).where(due).limit(1)) is None
        session.rollback()  # the claim must begin as a writer
        if nothing_due:
            return []
    lease = now + timedelta(seconds=lease_seconds)
    begin_write(session)
    session.execute(
        update(_DELIVERIES)
        .where(
            _D.status == S.SENDING,
            _D.lease_expires_at <= now,
            _D.attempts >= max_attempts,
        )
        .values(
            status=S.DEAD,
            lease_expires_at=None,
            updated_at=now,
            last_error=f"gave up after {max_attempts} attempts: "
            "the worker stopped while sending, each time",
        )
    )
    ids = session.scalars(
        update(_DELIVERIES)
        .where(_D.id.in_(candidates.scalar_subquery()))
        .values(
            status=S.SENDING,
            lease_expires_at=lease,
            attempts=_D.attempts + 1,
            updated_at=now,
        )
        .returning(_D.id)
    ).all()
    session.commit()
    return [(i, lease) for i in sorted(ids)]


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


class Worker:
    """Sends due deliveries with one mail backend, committing after every message."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        backend_factory: Callable[[Settings], MailBackend] = mail_backend,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.backend_factory = backend_factory
        self.clock = clock
        self.stop_event = threading.Event()
        self.wake_event = threading.Event()
        self.pacer = Pacer(settings.send_rate)
        self._backend: MailBackend | None = None

    # -- running -----------------------------------------------------------------------
    def run(self) -> None:
        """Work until stop() (or SIGTERM, see install_signal_handlers)."""
        log.info("worker started (backend %s)", self.settings.mail_backend)
        failures = 0  # polls failed in a row
        try:
            while not self.stop_event.is_set():
                try:
                    done = self.run_once()
                except Exception as exc:  # the database is away, say; keep the worker alive
                    failures += 1
                    done = []
                    if failures == 1:  # the whole story once, then a line per poll
                        log.exception("worker iteration failed; retrying shortly")
                    else:
                        log.warning(
                            "worker iteration failed again (%d in a row): %s",
                            failures,
                            _one_line(exc),
                        )
                else:
                    if failures:
                        log.info("worker recovered after %d failed iterations", failures)
                    failures = 0
                if not done:
                    self._close_backend()  # do not hold an idle SMTP connection
                    self.wake_event.wait(self.settings.worker_poll_seconds)
                    self.wake_event.clear()
        finally:
            self._close_backend()
            log.info("worker stopped")

    def stop(self) -> None:
        self.stop_event.set()
        self.wake_event.set()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self.wake_event.set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: finishing the message in hand, then exiting", signum)
            # Not self.stop() here: Event.set() takes the event's lock, which the interrupted
            # main thread may be holding inside wake_event.wait(), and the handler would
            # wait for it forever. Another thread can wait for that lock.
            threading.Thread(target=self.stop, name="formrelay-stop", daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run_once(self) -> list[Outcome]:
        """Claim one batch and send it; returns what became of each claimed delivery."""
        with self.session_factory() as session:
            claimed = claim_due_deliveries(
                session,
                limit=self._batch_size(),
                lease_seconds=self.settings.lease_seconds,
                max_attempts=self.settings.max_attempts,
                now=self.clock(),
            )
            if not claimed:
                return []
            # The whole batch in three queries, not three per message. Committing (not rolling
            # back) ends the read keeping the objects loaded (expire_on_commit=False): no
            # transaction stays open while a mail server takes its time.
            loaded = {
                d.id: d
                for d in session.scalars(
                    select(Delivery)
                    .where(_D.id.in_([i for i, _ in claimed]))
                    .options(selectinload(Delivery.submission).selectinload(Submission.form))
                )
            }
            session.commit()
            outcomes: list[Outcome] = []
            for index, (delivery_id, lease) in enumerate(claimed):
                self.pacer.wait(self.stop_event)
                # A lease that ran out while earlier messages of the batch were sent may
                # already be another worker's: sending would deliver the message twice.
                if self.stop_event.is_set() or self.clock() >= lease:
                    self._release(session, claimed[index:])
                    break
                delivery = loaded.get(delivery_id)
                if delivery is None:  # deleted with its submission meanwhile
                    continue
                outcomes.append(self._deliver(session, delivery, lease))
            return outcomes

    def _batch_size(self) -> int:
        """The batch, kept small enough to be sent well within its lease at the send rate."""
        rate = self.settings.send_rate
        if not rate:
            return self.settings.worker_batch_size
        return max(
            1, min(self.settings.worker_batch_size, int(rate * self.settings.lease_seconds / 2))
        )

    def drain(self, max_batches: int = 1000) -> list[Outcome]:
        """Send everything due now (for tests and `formrelay worker --once`)."""
        outcomes: list[Outcome] = []
        try:
            for _ in range(max_batches):
                batch = self.run_once()
                if not batch:
                    break
                outcomes.extend(batch)
        finally:
            self._close_backend()
        return outcomes

    # -- one delivery --------------------------------------------------------------------
    def _deliver(self, session: Session, delivery: Delivery, lease: datetime) -> Outcome:
        error: DeliveryFailed | None = None
        provider_id = None
        try:
            message = build_notification(delivery, self.settings)
            provider_id = self._get_backend().send(message).provider_message_id
        except DeliveryFailed as exc:
            error = exc
        except Exception as exc:  # a bug of ours: keep the row, say what happened, retry later
            log.exception("delivery %s: unexpected error", delivery.id)
            error = DeliveryFailed(f"internal error: {exc!r}", retryable=True)
        return self._while_leased(
            session,
            delivery.id,
            lease,
            lambda: self._record(
                session, delivery.id, lease, delivery.attempts, error, provider_id
            ),
        )

    def _while_leased(
        self, session: Session, delivery_id: int, lease: datetime, record: Callable[[], Outcome]
    ) -> Outcome:
        """Record an outcome, trying again while the database is away and the lease lasts.

        The message has been handed over (or refused) by now: an outcome left unrecorded
        means the row is sent again once its lease runs out, a duplicate for the recipient.
        """
        # Measured on the monotonic clock, as the time actually left to this worker.
        deadline = time.monotonic() + (lease - self.clock()).total_seconds() - LEASE_MARGIN
        pause = 0.1
        while True:
            try:
                return record()
            except DATABASE_AWAY as exc:
                session.rollback()
                # Asked to stop (SIGTERM), the worker exits rather than outstay the platform's
                # grace period; the lease then hands the row on, as after a kill.
                if self.stop_event.is_set() or time.monotonic() + pause > deadline:
                    raise
                log.warning(
                    "delivery %s: recording its outcome failed, trying again in %.1f s: %s",
                    delivery_id,
                    pause,
                    _one_line(exc),
                )
                self.stop_event.wait(pause)
                pause = min(pause * 2, 5.0)

    def _record(
        self,
        session: Session,
        delivery_id: int,
        lease: datetime,
        attempts: int,
        error: DeliveryFailed | None,
        provider_id: str | None,
    ) -> Outcome:
        now = self.clock()
        params: dict[str, object] = {
            "b_id": delivery_id,
            "b_lease": lease,
            "b_now": now,
            "b_sent_at": None,
            "b_provider_id": None,
            "b_error": None,
            "b_next": None,
        }
        if error is None:
            params.update(b_status=S.SENT, b_sent_at=now, b_provider_id=provider_id)
        elif error.retryable and attempts < self.settings.max_attempts:
            delay = retry_delay(attempts, self.settings)
            params.update(
                b_status=S.FAILED,
                b_next=now + timedelta(seconds=delay),
                b_error=str(error)[:4000],
            )
        else:
            reason = (
                str(error)
                if not error.retryable
                else (f"gave up after {attempts} attempts: {error}")
            )
            params.update(b_status=S.DEAD, b_error=reason[:4000])
        begin_write(session)
        result = session.connection().execute(_RECORD, params)
        session.commit()
        status = str(params["b_status"])
        if result.rowcount != 1:
            log.warning("delivery %s: lease lost before recording %s", delivery_id, status)
        log.info("delivery %s: %s%s", delivery_id, status, f" ({error})" if error else "")
        return Outcome(delivery_id, status, str(error) if error else None)

    def _release(self, session: Session, claimed: Sequence[tuple[int, datetime]]) -> None:
        """Hand back leased rows not yet tried, so another worker takes them at once."""
        begin_write(session)
        for delivery_id, lease in claimed:
            session.execute(
                update(_DELIVERIES)
                .where(
                    _D.id == delivery_id,
                    _D.status == S.SENDING,
                    _D.lease_expires_at == lease,
                )
                .values(
                    status=S.PENDING,
                    lease_expires_at=None,
                    attempts=_D.attempts - 1,
                    next_attempt_at=self.clock(),
                )
            )
        session.commit()

    def _get_backend(self) -> MailBackend:
        if self._backend is None:
            self._backend = self.backend_factory(self.settings)
        return self._backend

    def _close_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception:
                log.exception("closing the mail backend failed")


def _one_line(exc: BaseException) -> str:
    """The exception's first line, for a log line (a database error runs to many)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
