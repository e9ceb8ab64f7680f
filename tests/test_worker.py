"""The outbox worker, in-process: what it claims, how it records each outcome, how it backs off.

The worker runs against the test's database with a fake mail backend (`outbox`) and, where
time matters, a clock the test moves by hand. Multi-process behaviour (several workers, a
killed worker, SIGTERM) is in test_worker_processes.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.message import Message
from itertools import pairwise

import pytest
from flask import Flask
from sqlalchemy import Connection, event, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from formrelay.delivery import Backend, DeliveryFailed, SendResult
from formrelay.extensions import db
from formrelay.models import Delivery, Submission, WorkerHeartbeat, utcnow
from formrelay.services.workers import outbox_status
from formrelay.settings import Settings, get_settings
from formrelay.worker import Outcome, Pacer, Worker, WorkerIdentity, retry_delay

from .factories import make_delivery, make_form
from .fakes import RecordingBackend
from .servers import wait_until
from .steps import deliveries, statuses, submit


class Clock:
    """A clock moved by hand; it starts a minute ahead, so rows made during the test are due."""

    def __init__(self) -> None:
        self.now = utcnow() + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


NewWorker = Callable[..., Worker]


@pytest.fixture
def new_worker(app: Flask, outbox: RecordingBackend, clock: Clock) -> NewWorker:
    """Build a worker on the test database: `new_worker(backend=outbox, **settings)`."""

    def build(backend: Backend | None = None, **settings: object) -> Worker:
        chosen = outbox if backend is None else backend
        return Worker(
            sessionmaker(bind=db.engine, expire_on_commit=False),
            dataclasses.replace(get_settings(app), **settings),  # type: ignore[arg-type]
            backend_factory=lambda channel, settings: chosen,
            clock=clock,
        )

    return build


def retryable(text: str = "SMTP 451 try again later") -> DeliveryFailed:
    return DeliveryFailed(text, retryable=True)


# -- claiming ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "due_in_seconds", "claimed"),
    [
        ("pending", -1, True),
        ("pending", 0, True),
        ("pending", 60, False),
        ("failed", -1, True),
        ("failed", 60, False),
        ("sent", -1, False),
        ("dead", -1, False),
    ],
)
def test_worker_claims_only_deliveries_that_are_due(
    new_worker, outbox, clock, status, due_in_seconds, claimed
):
    due_at = clock.now + timedelta(seconds=due_in_seconds)
    make_delivery(db.session, status=status, next_attempt_at=due_at)

    outcomes = new_worker().run_once()

    assert statuses(outcomes) == (["sent"] if claimed else [])
    assert len(outbox.sent) == (1 if claimed else 0)
    assert deliveries()[0].status == ("sent" if claimed else status)


def test_sent_delivery_records_the_provider_id_and_clears_its_lease(new_worker, clock):
    make_delivery(db.session)

    new_worker().run_once()

    (d,) = deliveries()
    assert (d.status, d.attempts, d.provider_message_id, d.last_error) == (
        "sent",
        1,
        "fake-1",
        None,
    )
    assert d.sent_at == clock.now
    assert d.lease_expires_at is None


def test_idle_worker_leaves_the_sqlite_write_lock_alone(databases, database_url, new_worker):
    if databases.name != "sqlite":
        pytest.skip("SQLite's one database-wide write lock")
    # Another process writing; a reader that then writes could not wait for an idle worker.
    writer = sqlite3.connect(make_url(database_url).database, isolation_level=None, timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        assert new_worker().run_once() == []
        assert time.monotonic() - started < 1  # did not queue for the lock
    finally:
        writer.rollback()
        writer.close()


# -- failures and backoff ------------------------------------------------------------------
def test_retryable_failure_is_tried_again_after_a_backoff(new_worker, outbox, clock):
    make_delivery(db.session)
    worker = new_worker(retry_base_seconds=30)
    outbox.fail_with(retryable("SMTP 451 try again later"))

    assert statuses(worker.run_once()) == ["failed"]

    (d,) = deliveries()
    assert (d.status, d.attempts, d.last_error) == ("failed", 1, "SMTP 451 try again later")
    assert d.lease_expires_at is None
    delay = (d.next_attempt_at - clock.now).total_seconds()
    assert 0.8 * 30 <= delay <= 1.2 * 30
    assert worker.run_once() == []  # not due yet

    clock.now = d.next_attempt_at
    assert statuses(worker.run_once()) == ["sent"]
    (d,) = deliveries()
    assert (d.status, d.attempts, d.last_error) == ("sent", 2, None)


def test_backoff_doubles_with_each_failure_up_to_the_maximum(new_worker, outbox, clock):
    make_delivery(db.session)
    worker = new_worker(retry_base_seconds=10, retry_max_delay_seconds=40, max_attempts=20)
    delays = []
    for _ in range(8):
        outbox.fail_with(retryable())
        assert statuses(worker.run_once()) == ["failed"]
        (d,) = deliveries()
        delays.append((d.next_attempt_at - clock.now).total_seconds())
        clock.now = d.next_attempt_at

    nominal = [10, 20, 40, 40, 40, 40, 40, 40]
    for delay, expected in zip(delays, nominal, strict=True):
        assert 0.8 * expected <= delay <= min(1.2 * expected, 40)


@pytest.mark.parametrize(
    ("attempts", "rand", "seconds"),
    [
        (1, 0.5, 30),
        (2, 0.5, 60),
        (3, 0.5, 120),
        (10, 0.5, 15360),
        (11, 0.5, 21600),  # 30720 nominal, capped at 6 h
        (1, 0.0, 24),  # -20%
        (1, 0.99999, 36),  # +20%
        (12, 0.0, 17280),  # jitter still spreads retries at the cap...
        (12, 0.99999, 21600),  # ...but never past it
        (5000, 0.5, 21600),  # no overflow however many attempts are allowed
    ],
)
def test_retry_delay_is_exponential_jittered_and_capped(attempts, rand, seconds):
    assert retry_delay(attempts, Settings(), rand=lambda: rand) == pytest.approx(seconds, rel=1e-4)


def test_default_retry_schedule_spans_about_a_day():
    settings = Settings()
    assert (settings.max_attempts, settings.retry_base_seconds) == (13, 30.0)
    assert settings.retry_max_delay_seconds == 6 * 3600
    # A delay follows every failed attempt but the last.
    waits = [retry_delay(n, settings, rand=lambda: 0.5) for n in range(1, settings.max_attempts)]
    assert 20 * 3600 <= sum(waits) <= 36 * 3600


def test_permanent_failure_is_dead_at_once(new_worker, outbox, clock):
    make_delivery(db.session)
    worker = new_worker()
    outbox.fail_with(DeliveryFailed("SMTP 550 no such user here", retryable=False))

    assert statuses(worker.run_once()) == ["dead"]

    (d,) = deliveries()
    assert (d.status, d.attempts, d.last_error) == ("dead", 1, "SMTP 550 no such user here")
    assert (d.sent_at, d.lease_expires_at) == (None, None)
    clock.advance(days=2)
    assert worker.run_once() == []
    assert outbox.sent == []


def test_worker_gives_up_after_max_attempts(new_worker, outbox, clock):
    make_delivery(db.session)
    worker = new_worker(max_attempts=3)
    outcomes = []
    for _ in range(3):
        outbox.fail_with(retryable("SMTP 421 too busy"))
        outcomes += worker.run_once()
        clock.now = max(clock.now, deliveries()[0].next_attempt_at)

    assert statuses(outcomes) == ["failed", "failed", "dead"]
    (d,) = deliveries()
    assert (d.status, d.attempts) == ("dead", 3)
    assert d.last_error == "gave up after 3 attempts: SMTP 421 too busy"
    clock.advance(days=2)
    assert worker.run_once() == []
    assert outbox.sent == []


def test_unexpected_error_while_sending_is_recorded_and_retried(new_worker, clock):
    class BrokenBackend(RecordingBackend):
        def send(self, message: Message) -> SendResult:
            raise KeyError("bug")

    make_delivery(db.session)

    assert statuses(new_worker(BrokenBackend()).run_once()) == ["failed"]

    (d,) = deliveries()
    assert (d.status, d.attempts, d.last_error) == ("failed", 1, "internal error: KeyError('bug')")


# -- leases --------------------------------------------------------------------------------
def test_delivery_left_sending_is_reclaimed_once_its_lease_expires(new_worker, outbox, clock):
    expired = clock.now - timedelta(seconds=1)
    make_delivery(db.session, status="sending", attempts=1, lease_expires_at=expired)

    assert statuses(new_worker().run_once()) == ["sent"]

    (d,) = deliveries()
    assert (d.status, d.attempts, d.lease_expires_at) == ("sent", 2, None)
    assert len(outbox.sent) == 1


def test_a_message_that_killed_its_worker_every_time_is_given_up(new_worker, outbox, clock):
    expired = clock.now - timedelta(seconds=1)
    # 13 attempts: the default max_attempts
    make_delivery(db.session, status="sending", attempts=13, lease_expires_at=expired)

    assert new_worker().run_once() == []

    (d,) = deliveries()
    assert (d.status, d.attempts, d.lease_expires_at) == ("dead", 13, None)
    assert d.last_error == (
        "gave up after 13 attempts: the worker stopped while sending, each time"
    )
    assert outbox.sent == []


def test_delivery_with_a_live_lease_is_left_to_its_worker(new_worker, outbox, clock):
    live = clock.now + timedelta(seconds=60)
    make_delivery(db.session, status="sending", attempts=1, lease_expires_at=live)

    assert new_worker().run_once() == []

    (d,) = deliveries()
    assert (d.status, d.attempts, d.lease_expires_at) == ("sending", 1, live)
    assert outbox.sent == []


class InterruptedBackend(RecordingBackend):
    """Runs `meanwhile` during each send, then fails or succeeds as programmed."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        super().__init__()
        self.meanwhile = meanwhile

    def send(self, message: Message) -> SendResult:
        self.meanwhile()
        return super().send(message)


def test_worker_whose_lease_was_taken_over_does_not_overwrite_the_new_holder(new_worker, clock):
    make_delivery(db.session)
    rescuer_outbox = RecordingBackend()
    rescuer = new_worker(rescuer_outbox, lease_seconds=30)

    def lease_runs_out_and_another_worker_sends() -> None:
        clock.advance(seconds=31)
        assert statuses(rescuer.run_once()) == ["sent"]

    slow_backend = InterruptedBackend(lease_runs_out_and_another_worker_sends)
    slow_backend.fail_with(retryable("SMTP timed out"))
    new_worker(slow_backend, lease_seconds=30).run_once()

    (d,) = deliveries()
    assert (d.status, d.attempts, d.last_error) == ("sent", 2, None)
    assert d.provider_message_id == "fake-1"
    assert len(rescuer_outbox.sent) == 1


def test_worker_does_not_start_a_message_whose_lease_ran_out_during_the_batch(
    client, new_worker, outbox, clock
):
    form = make_form(db.session, recipients=("a@example.com", "b@example.com", "c@example.com"))
    submit(client, form)
    slow_backend = InterruptedBackend(lambda: clock.advance(seconds=31))

    assert statuses(new_worker(slow_backend, lease_seconds=30).run_once()) == ["sent"]

    rows = deliveries()
    assert [(d.target, d.status, d.attempts) for d in rows] == [
        ("a@example.com", "sent", 1),
        ("b@example.com", "pending", 0),
        ("c@example.com", "pending", 0),
    ]
    assert statuses(new_worker().drain()) == ["sent", "sent"]
    assert [m["To"] for m in slow_backend.sent + outbox.sent] == [d.target for d in rows]


# -- the database away ---------------------------------------------------------------------
class Outage:
    """Makes the next `commits` COMMITs on the engine fail as a database going away would."""

    def __init__(self) -> None:
        self.commits = 0
        self.failed = 0

    def __call__(self, connection: Connection) -> None:
        if self.commits:
            self.commits -= 1
            self.failed += 1
            # The transaction goes with the connection, as it would with the server. Left
            # open, SQLite would keep it (and its write lock) on a connection back in the pool:
            # a Session closed after a failed commit does not roll back.
            connection.connection.dbapi_connection.rollback()
            raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))


@pytest.fixture
def outage(app: Flask) -> Iterator[Outage]:
    outage = Outage()
    event.listen(db.engine, "commit", outage)
    yield outage
    event.remove(db.engine, "commit", outage)


def test_an_outcome_the_database_could_not_take_is_recorded_once_it_is_back(
    new_worker, clock, outage, caplog
):
    make_delivery(db.session)
    # The mail server takes the message; then the database is away for two commits.
    backend = InterruptedBackend(lambda: setattr(outage, "commits", 2))

    assert statuses(new_worker(backend).run_once()) == ["sent"]

    (d,) = deliveries()
    assert (d.status, d.attempts, d.lease_expires_at) == ("sent", 1, None)
    assert len(backend.sent) == 1 and outage.failed == 2
    assert new_worker().run_once() == []  # nothing left to send twice
    retries = [r.message for r in caplog.records if "recording its outcome failed" in r.message]
    assert len(retries) == 2 and "server closed the connection" in retries[0]


def test_an_outcome_still_unrecorded_when_the_lease_ends_is_left_to_the_lease(
    new_worker, clock, outage
):
    make_delivery(db.session)
    backend = InterruptedBackend(lambda: setattr(outage, "commits", 1000))
    started = time.monotonic()

    with pytest.raises(OperationalError):
        new_worker(backend, lease_seconds=2).run_once()

    # Given up a margin before the lease ends, when another worker may take the row over.
    assert time.monotonic() - started < 2
    outage.commits = 0
    (d,) = deliveries()
    assert (d.status, d.attempts) == ("sending", 1)


def test_a_worker_asked_to_stop_while_its_database_is_away_exits_at_once(new_worker, outage):
    make_delivery(db.session)
    workers: list[Worker] = []

    def database_goes_away_and_sigterm_arrives() -> None:
        outage.commits = 1000
        workers[0].stop()

    workers.append(new_worker(InterruptedBackend(database_goes_away_and_sigterm_arrives)))
    started = time.monotonic()

    workers[0].run()

    assert time.monotonic() - started < 2  # not the lease's five minutes
    outage.commits = 0
    (d,) = deliveries()
    assert (d.status, d.attempts) == ("sending", 1)  # the lease hands it on, as after a kill


def test_a_worker_says_once_in_full_that_its_database_is_away_then_a_line_per_poll(
    new_worker, running, caplog, monkeypatch
):
    caplog.set_level(logging.INFO, logger="formrelay.worker")
    worker = new_worker(worker_poll_seconds=0.01)
    failing = [True]

    def run_once() -> list[Outcome]:
        if failing[0]:
            raise OperationalError("SELECT", {}, ConnectionError("connection refused"))
        return []

    monkeypatch.setattr(worker, "run_once", run_once)
    running(worker)
    wait_until(lambda: len(caplog.records) >= 4)
    failing[0] = False
    wait_until(lambda: any("recovered" in r.message for r in caplog.records))

    failures = [r for r in caplog.records if "iteration failed" in r.message]
    assert failures[0].exc_info is not None  # the traceback, once
    assert all(r.exc_info is None for r in failures[1:])
    assert "(2 in a row): OperationalError: (builtins.ConnectionError) connection refused" in (
        failures[1].message
    )


# -- stopping and idling -------------------------------------------------------------------
class StoppingBackend(RecordingBackend):
    """Asks its worker to stop while sending the first message, as SIGTERM would."""

    worker: Worker | None = None

    def send(self, message: Message) -> SendResult:
        if not self.sent and self.worker is not None:
            self.worker.stop()
        return super().send(message)


def test_stop_during_a_batch_finishes_the_message_in_hand_and_hands_back_the_rest(
    client, new_worker, outbox, clock
):
    form = make_form(db.session, recipients=("a@example.com", "b@example.com", "c@example.com"))
    submit(client, form)
    stopping = StoppingBackend()
    worker = stopping.worker = new_worker(stopping)

    worker.run()  # returns: stop() was called

    rows = deliveries()
    assert [(d.status, d.attempts, d.lease_expires_at) for d in rows] == [
        ("sent", 1, None),
        ("pending", 0, None),
        ("pending", 0, None),
    ]
    assert all(d.next_attempt_at <= clock.now for d in rows)  # due again at once
    assert [m["To"] for m in stopping.sent] == ["a@example.com"]

    assert statuses(new_worker().drain()) == ["sent", "sent"]
    assert [m["To"] for m in outbox.sent] == ["b@example.com", "c@example.com"]
    message_ids = {m["Message-ID"] for m in stopping.sent + outbox.sent}
    assert len(message_ids) == 3


class EventLogBackend(RecordingBackend):
    """Keeps the order of sends and closes."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def send(self, message: Message) -> SendResult:
        result = super().send(message)
        self.events.append("send")
        return result

    def close(self) -> None:
        super().close()
        self.events.append("close")


@pytest.fixture
def running() -> Iterator[Callable[[Worker], threading.Thread]]:
    """Run workers in threads; each is stopped and joined after the test."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(worker: Worker) -> threading.Thread:
        thread = threading.Thread(target=worker.run, name="test-worker")
        thread.start()
        started.append((worker, thread))
        return thread

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_worker_closes_its_mail_connection_when_it_goes_idle(client, new_worker, running):
    submit(client, make_form(db.session, recipients=("a@example.com", "b@example.com")))
    backend = EventLogBackend()
    thread = running(new_worker(backend, worker_poll_seconds=0.02))

    wait_until(lambda: "close" in backend.events)

    assert backend.events[:3] == ["send", "send", "close"]  # kept open across the batch
    assert thread.is_alive()


def test_wake_makes_an_idle_worker_look_at_once(client, new_worker, outbox, running):
    worker = new_worker(worker_poll_seconds=60)
    running(worker)
    time.sleep(0.1)  # idle, waiting for its next poll a minute away
    submit(client, make_form(db.session))

    worker.wake()

    wait_until(lambda: len(outbox.sent) == 1, timeout=5)


# -- what gets a delivery at all -----------------------------------------------------------
def test_spam_submission_gets_no_delivery(client, worker, outbox):
    form = make_form(db.session)

    submit(client, form, message="cheap pills", _gotcha="http://spam.example")

    submission = db.session.scalars(select(Submission)).one()
    assert submission.is_spam
    assert deliveries() == []
    assert worker.drain() == []
    assert outbox.sent == []


def test_unverified_recipient_gets_no_delivery(client, worker, outbox):
    form = make_form(
        db.session, recipients=("owner@example.com", "new@example.com"), verified=False
    )
    form.recipients[0].verified = True
    form.recipients[0].verified_at = utcnow()
    db.session.commit()

    submit(client, form)

    assert [d.target for d in deliveries()] == ["owner@example.com"]
    assert statuses(worker.drain()) == ["sent"]
    assert [m["To"] for m in outbox.sent] == ["owner@example.com"]


# -- send rate -----------------------------------------------------------------------------
class FakeTime:
    """A monotonic clock and a stop event whose wait() moves that clock instead of sleeping."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float) -> bool:
        self.waits.append(round(timeout, 6))
        self.now += timeout
        return False


def test_send_rate_spaces_sends_evenly():
    fake = FakeTime()
    pacer = Pacer(4.0, clock=fake.clock)  # 4 a second: one every 0.25 s
    send_times = []
    for _ in range(5):
        pacer.wait(fake)  # type: ignore[arg-type]
        send_times.append(fake.now)
        fake.now += 0.05  # the send itself
    assert [round(b - a, 6) for a, b in pairwise(send_times)] == [0.25] * 4


def test_send_rate_does_not_save_up_idle_time_for_a_burst():
    fake = FakeTime()
    pacer = Pacer(2.0, clock=fake.clock)
    pacer.wait(fake)  # type: ignore[arg-type]
    fake.now += 60  # idle for a minute
    pacer.wait(fake)  # type: ignore[arg-type]
    pacer.wait(fake)  # type: ignore[arg-type]
    assert fake.waits == [0.5]


def test_no_send_rate_never_waits():
    fake = FakeTime()
    pacer = Pacer(0, clock=fake.clock)
    for _ in range(3):
        pacer.wait(fake)  # type: ignore[arg-type]
    assert fake.waits == []


# -- heartbeats ----------------------------------------------------------------------------
def set_delivery(delivery_id: int, **values: object) -> None:
    """Put a row in the state a test needs (a lease held by some worker, say)."""
    db.session.rollback()
    db.session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))
    db.session.commit()


def heartbeat_rows() -> list[WorkerHeartbeat]:
    db.session.rollback()
    return list(db.session.scalars(select(WorkerHeartbeat)))


def dead_worker(clock: Clock, *, silent_for: float) -> str:
    """A worker row whose last beat was `silent_for` seconds ago; returns its id."""
    identity = WorkerIdentity(host="gone.example", pid=4242, started_at=clock.now)
    db.session.rollback()
    db.session.add(
        WorkerHeartbeat(
            id=identity.id,
            host=identity.host,
            pid=identity.pid,
            started_at=clock.now - timedelta(hours=1),
            heartbeat_at=clock.now - timedelta(seconds=silent_for),
        )
    )
    db.session.commit()
    return identity.id


def test_a_claim_registers_the_worker_and_names_it_on_the_rows(client, new_worker, clock):
    submit(client, make_form(db.session))
    worker = new_worker(backend=InterruptedBackend(lambda: None))
    seen: list[tuple[str, str | None]] = []
    worker.sender.backend_factory = lambda channel, settings: InterruptedBackend(
        lambda: seen.extend((d.status, d.leased_by) for d in deliveries())
    )

    assert statuses(worker.run_once()) == ["sent"]

    assert seen == [("sending", worker.identity.id)]
    (row,) = heartbeat_rows()
    assert (row.id, row.host, row.pid, row.heartbeat_at) == (
        worker.identity.id,
        socket.gethostname(),
        os.getpid(),
        clock.now,
    )
    (d,) = deliveries()
    assert (d.status, d.leased_by, d.lease_expires_at) == ("sent", None, None)


def test_a_worker_stopped_cleanly_deregisters(client, new_worker):
    submit(client, make_form(db.session))
    worker = new_worker()

    assert statuses(worker.drain()) == ["sent"]

    assert heartbeat_rows() == []


@pytest.mark.parametrize(("silent_for", "reclaimed"), [(16, True), (14, False)])
def test_a_row_of_a_worker_silent_past_the_grace_period_is_reclaimed_at_once(
    client, new_worker, outbox, clock, silent_for, reclaimed
):
    submit(client, make_form(db.session))
    gone = dead_worker(clock, silent_for=silent_for)
    (d,) = deliveries()
    live_lease = clock.now + timedelta(seconds=280)  # the lease alone would wait minutes
    set_delivery(d.id, status="sending", attempts=1, leased_by=gone, lease_expires_at=live_lease)

    outcomes = new_worker(worker_grace_seconds=15).run_once()

    (d,) = deliveries()
    if reclaimed:
        assert statuses(outcomes) == ["sent"]
        assert (d.status, d.attempts, d.leased_by) == ("sent", 2, None)
        assert len(outbox.sent) == 1
    else:
        assert outcomes == []
        assert (d.status, d.attempts, d.leased_by) == ("sending", 1, gone)
        assert outbox.sent == []


def test_a_row_of_an_unregistered_worker_is_reclaimed(client, new_worker, outbox, clock):
    submit(client, make_form(db.session))
    (d,) = deliveries()
    lease = clock.now + timedelta(seconds=280)
    set_delivery(
        d.id, status="sending", attempts=1, leased_by="never:1:beat", lease_expires_at=lease
    )

    assert statuses(new_worker().run_once()) == ["sent"]


def test_a_beat_renews_the_leases_of_what_the_worker_is_still_sending(client, new_worker, clock):
    recipients = ("a@example.com", "b@example.com", "c@example.com")
    submit(client, make_form(db.session, recipients=recipients))
    worker = new_worker(lease_seconds=60)
    held, abandoned, others = deliveries()
    lease = clock.now + timedelta(seconds=5)
    set_delivery(held.id, status="sending", leased_by=worker.identity.id, lease_expires_at=lease)
    # Its outcome could not be recorded (the database was away): the worker let it go.
    set_delivery(
        abandoned.id, status="sending", leased_by=worker.identity.id, lease_expires_at=lease
    )
    set_delivery(others.id, status="sending", leased_by="other:1:x", lease_expires_at=lease)
    worker.heartbeat.holding = (held.id, others.id)
    clock.advance(seconds=30)

    worker.heartbeat.beat()

    held, abandoned, others = deliveries()
    assert held.lease_expires_at == clock.now + timedelta(seconds=60)
    assert abandoned.lease_expires_at == lease  # runs out: another attempt takes it
    assert others.lease_expires_at == lease
    (row,) = heartbeat_rows()
    assert (row.id, row.heartbeat_at) == (worker.identity.id, clock.now)
    assert worker.heartbeat.valid_until == clock.now + timedelta(seconds=15)  # the grace


def test_a_worker_forgets_workers_dead_for_a_day(client, new_worker, clock):
    dead_worker(clock, silent_for=25 * 3600)
    recent = dead_worker(clock, silent_for=3600)
    worker = new_worker()

    worker.heartbeat.beat()

    assert sorted(r.id for r in heartbeat_rows()) == sorted([recent, worker.identity.id])


def test_outbox_status_says_who_is_alive_and_what_waits(client, new_worker, clock):
    form = make_form(db.session, recipients=("a@example.com", "b@example.com", "c@example.com"))
    submit(client, form)
    gone = dead_worker(clock, silent_for=60)
    worker = new_worker()
    worker.heartbeat.beat()
    a, b, c = deliveries()
    set_delivery(a.id, next_attempt_at=clock.now - timedelta(seconds=90))  # due, waiting
    set_delivery(b.id, status="failed", next_attempt_at=clock.now + timedelta(minutes=5))
    set_delivery(c.id, status="sending", leased_by=worker.identity.id)

    status = outbox_status(db.session(), now=clock.now, grace_seconds=15)

    assert [(w.id, w.alive) for w in status.workers] == [(worker.identity.id, True), (gone, False)]
    assert (status.due, status.scheduled, status.sending) == (1, 1, 1)
    assert status.oldest_due_age(clock.now) == timedelta(seconds=90)


def test_a_delivery_of_an_unknown_channel_ends_dead_saying_so(client, new_worker, outbox):
    submit(client, make_form(db.session))
    (d,) = deliveries()
    set_delivery(d.id, channel="pigeon")

    assert statuses(new_worker().run_once()) == ["dead"]

    (d,) = deliveries()
    assert (d.status, d.last_error) == ("dead", "no delivery channel 'pigeon' is registered")
    assert outbox.sent == []


def test_a_claim_takes_the_longest_waiting_due_rows_of_every_kind_first(app, clock):
    # Pending, failed, a lease run out, a dead worker's row: the oldest by next_attempt_at,
    # at most the batch, whatever kind they are (on SQLite each kind is read apart).
    from formrelay.worker.claims import claim_due_deliveries

    gone = dead_worker(clock, silent_for=600)
    me = WorkerIdentity(host="me.example", pid=1, started_at=clock.now)  # alive: it claims
    ago = [clock.now - timedelta(minutes=m) for m in range(10)]
    rows = {
        "pending-9": make_delivery(db.session, next_attempt_at=ago[9]),
        "failed-8": make_delivery(db.session, status="failed", next_attempt_at=ago[8]),
        "expired-7": make_delivery(
            db.session,
            status="sending",
            next_attempt_at=ago[7],
            leased_by=me.id,  # its own earlier claim, whose lease ran out
            lease_expires_at=ago[1],
        ),
        "orphaned-6": make_delivery(
            db.session,
            status="sending",
            next_attempt_at=ago[6],
            leased_by=gone,
            lease_expires_at=clock.now + timedelta(minutes=5),
        ),
        "pending-5": make_delivery(db.session, next_attempt_at=ago[5]),
        "pending-1": make_delivery(db.session, next_attempt_at=ago[1]),
        "failed-later": make_delivery(
            db.session, status="failed", next_attempt_at=clock.now + timedelta(minutes=1)
        ),
    }
    rows["both-20"] = make_delivery(  # a dead worker's, its lease run out too: one row
        db.session,
        status="sending",
        next_attempt_at=clock.now - timedelta(minutes=20),
        leased_by=gone,
        lease_expires_at=ago[1],
    )
    ids = {name: row.id for name, row in rows.items()}

    def claim() -> list[int]:
        return sorted(
            c.delivery_id
            for c in claim_due_deliveries(
                db.session(),
                worker=me,
                limit=5,
                lease_seconds=300,
                grace_seconds=15,
                now=clock.now,
                max_attempts=13,
            )
        )

    claimed = claim()
    expected = ["both-20", "pending-9", "failed-8", "expired-7", "orphaned-6"]
    assert claimed == sorted(ids[n] for n in expected)
    rest = claim()
    assert rest == sorted([ids["pending-5"], ids["pending-1"]])
