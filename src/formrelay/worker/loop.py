"""The outbox worker: claim due deliveries, send them, record each outcome, back off.

The pieces read on their own: claims.py leases rows, sending.py sends one through its
channel, outcomes.py decides and records what became of it, heartbeat.py keeps the worker
known to be alive, pacing.py spaces sends. This module runs them in a loop.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from types import FrameType

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from ..delivery import DeliveryDeferred, DeliveryFailed, create_backend
from ..models import Delivery, Submission, Suppression, utcnow
from ..services.suppressions import canonical, suppressed_among, suppressed_reason
from ..settings import Settings
from .claims import Claim, D, claim_due_deliveries, release
from .heartbeat import Heartbeat, WorkerIdentity
from .housekeeping import Housekeeping
from .outcomes import Outcome, decide, one_line, record_while_leased
from .pacing import SharedPacer
from .sending import BackendFactory, Sender

log = logging.getLogger("formrelay.worker")


class Worker:
    """Sends due deliveries through their channels' backends, committing after every one."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        backend_factory: BackendFactory = create_backend,
        clock: Callable[[], datetime] = utcnow,
        identity: WorkerIdentity | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.clock = clock
        self.identity = identity or WorkerIdentity(started_at=clock())
        self.heartbeat = Heartbeat(session_factory, settings, self.identity, clock)
        self.sender = Sender(settings, backend_factory)
        self.pacer = SharedPacer(
            session_factory,
            rate_source(settings),
            refresh_seconds=settings.ses_rate_refresh_seconds,
        )
        # Suppressed addresses among the batch in hand, by canonical address.
        self._suppressed: dict[str, Suppression] = {}
        self.stop_event = threading.Event()
        self.wake_event = threading.Event()
        self.housekeeping = Housekeeping(session_factory, settings)

    # -- running -----------------------------------------------------------------------
    def run(self) -> None:
        """Work until stop() (or SIGTERM, see install_signal_handlers)."""
        log.info("worker started (id %s, backend %s)", self.identity.id, self.settings.mail_backend)
        if self.settings.mail_backend == "ses" and not self.settings.ses_configuration_set:
            log.warning(
                "SES_CONFIGURATION_SET is unset: SES reports no bounces or complaints to "
                "formrelay, and nothing keeps the account's rates down (see docs/ses.md)"
            )
        self.heartbeat.start()
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
                            one_line(exc),
                        )
                else:
                    if failures:
                        log.info("worker recovered after %d failed iterations", failures)
                    failures = 0
                # Once a day, between batches (a busy worker too): purge and sweep; not
                # when asked to stop.
                if not self.stop_event.is_set():
                    self.housekeeping.maybe_run()
                if not done:
                    self.sender.close()  # do not hold an idle SMTP connection
                    self.wake_event.wait(self.settings.worker_poll_seconds)
                    self.wake_event.clear()
        finally:
            self.sender.close()
            self.heartbeat.stop()
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

    def drain(self, max_batches: int = 1000) -> list[Outcome]:
        """Send everything due now (for tests and `formrelay worker --once`)."""
        outcomes: list[Outcome] = []
        self.heartbeat.start()
        try:
            for _ in range(max_batches):
                batch = self.run_once()
                if not batch:
                    break
                outcomes.extend(batch)
        finally:
            self.sender.close()
            self.heartbeat.stop()
        return outcomes

    # -- one batch -----------------------------------------------------------------------
    def run_once(self) -> list[Outcome]:
        """Claim one batch and send it; returns what became of each claimed delivery."""
        with self.session_factory() as session:
            now = self.clock()
            claims = claim_due_deliveries(
                session,
                worker=self.identity,
                limit=self._batch_size(),
                lease_seconds=self.settings.lease_seconds,
                grace_seconds=self.settings.worker_grace_seconds,
                max_attempts=self.settings.max_attempts,
                now=now,
            )
            if not claims:
                return []
            self.heartbeat.confirmed(now)
            self.heartbeat.holding = tuple(c.delivery_id for c in claims)
            try:
                return self._send_batch(session, claims)
            finally:
                self.heartbeat.holding = ()

    def _send_batch(self, session: Session, claims: list[Claim]) -> list[Outcome]:
        loaded = self._load(session, claims)
        self.sender.prepare(loaded.values())
        outcomes: list[Outcome] = []
        # Recipients (To and Cc) of each send to come, for the pacer to reserve ahead.
        costs = {
            c.delivery_id: 1 + len(d.cc or ())
            for c in claims
            if (d := loaded.get(c.delivery_id)) is not None and not self._suppressed_target(d)
        }
        for index, claim in enumerate(claims):
            delivery = loaded.get(claim.delivery_id)
            if claim.delivery_id in costs:
                upcoming = [
                    costs[c.delivery_id] for c in claims[index + 1 :] if c.delivery_id in costs
                ]
                self.pacer.wait(self.stop_event, costs[claim.delivery_id], upcoming)
            # Past the claim's safe window (no beat confirmed lately) another worker may
            # already hold the row: sending would deliver the message twice.
            if self.stop_event.is_set() or self.clock() >= self.heartbeat.valid_until:
                release(session, claims[index:], now=self.clock())
                break
            if delivery is not None:  # None: deleted with its submission meanwhile
                outcomes.append(self._deliver(session, delivery, claim))
            self.heartbeat.holding = tuple(c.delivery_id for c in claims[index + 1 :])
        return outcomes

    def _load(self, session: Session, claims: list[Claim]) -> dict[int, Delivery]:
        # The whole batch in four queries, not four per message. Committing (not rolling
        # back) ends the read keeping the objects loaded (expire_on_commit=False): no
        # transaction stays open while a mail server takes its time (a lazy load while
        # building a message would open one, and SQLite could not then record the outcome).
        submission = selectinload(Delivery.submission)
        loaded = {
            d.id: d
            for d in session.scalars(
                select(Delivery)
                .where(D.id.in_([c.delivery_id for c in claims]))
                .options(
                    submission.selectinload(Submission.form),
                    submission.selectinload(Submission.attachments),
                )
            )
        }
        # One query for the whole batch: which targets and Cc addresses are suppressed.
        self._suppressed = suppressed_among(
            session, [a for d in loaded.values() for a in (d.target, *(d.cc or ()))]
        )
        session.commit()
        return loaded

    def _batch_size(self) -> int:
        """The batch, kept small enough to be sent well within its lease at the send rate."""
        rate = self.pacer.rate
        if not rate:
            return self.settings.worker_batch_size
        return max(
            1, min(self.settings.worker_batch_size, int(rate * self.settings.lease_seconds / 2))
        )

    def _suppressed_target(self, delivery: Delivery) -> Suppression | None:
        return self._suppressed.get(canonical(delivery.target))

    def _deliver(self, session: Session, delivery: Delivery, claim: Claim) -> Outcome:
        error: DeliveryFailed | None = None
        provider_id = None
        suppressed = self._suppressed_target(delivery)
        if suppressed is not None:  # dead at once, nothing sent
            error = DeliveryFailed(suppressed_reason(suppressed), retryable=False)
        else:
            try:
                provider_id = self.sender.send(delivery, skip=frozenset(self._suppressed))
            except DeliveryFailed as exc:
                error = exc
            if isinstance(error, DeliveryDeferred) and error.pause_all:
                self.pacer.pause(error.pause_all)
        params = decide(claim, error, provider_id, self.settings, self.clock())
        return record_while_leased(
            session,
            params,
            seconds_left=(self.heartbeat.lease_until - self.clock()).total_seconds(),
            stop=self.stop_event,
        )


def rate_source(settings: Settings) -> Callable[[], float]:
    """Where the workers' shared rate comes from: SES's MaxSendRate (capped by
    FORMRELAY_SEND_RATE when set) for SES, else FORMRELAY_SEND_RATE (0: no limit)."""
    if settings.mail_backend == "ses":
        from ..delivery.ses import send_rate_source  # boto3 only where SES is used

        return send_rate_source(settings)
    return lambda: settings.send_rate
