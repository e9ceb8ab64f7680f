"""SharedPacer: one send rate for every worker, through the send_rates row (a fake clock;
the real database)."""

from __future__ import annotations

import threading

import pytest
from flask import Flask
from sqlalchemy.orm import sessionmaker

from formrelay.extensions import db
from formrelay.models import SendRate
from formrelay.worker.pacing import BLOCK_SECONDS, SharedPacer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stop() -> threading.Event:
    done = threading.Event()
    done.set()  # wait() returns at once; the slots it gives are what the tests read
    return done


def pacer(app: Flask, clock: Clock, rate: float = 10.0) -> SharedPacer:
    factory = sessionmaker(bind=db.engine, expire_on_commit=False)
    return SharedPacer(factory, lambda: rate, wall_clock=clock)


def test_two_workers_share_one_rate_counting_recipients(
    app: Flask, clock: Clock, stop: threading.Event
) -> None:
    first, second = pacer(app, clock), pacer(app, clock)  # 10 a second: 0.1 s a recipient

    slots = [
        first.wait(stop, 1),
        second.wait(stop, 2),  # a message with a Cc: two recipients
        first.wait(stop, 1),
        second.wait(stop, 1),
    ]

    base = clock.now
    assert slots == pytest.approx([base, base + 0.1, base + 0.3, base + 0.4])
    bucket = db.session.get(SendRate, "email")
    assert bucket is not None and bucket.next_slot == pytest.approx(base + 0.5)
    assert bucket.rate == 10.0


def test_idle_time_is_not_saved_up_for_a_burst(
    app: Flask, clock: Clock, stop: threading.Event
) -> None:
    worker = pacer(app, clock)
    worker.wait(stop)
    clock.now += 60

    # Of a minute idle, one recipient's share (0.1 s at 10 a second) is kept, no more.
    slots = [worker.wait(stop), worker.wait(stop), worker.wait(stop)]
    assert slots == pytest.approx([clock.now - 0.1, clock.now, clock.now + 0.1])


def test_a_slot_missed_by_a_hiccup_is_still_used(
    app: Flask, clock: Clock, stop: threading.Event
) -> None:
    worker = pacer(app, clock)
    base = clock.now
    worker.wait(stop)
    clock.now += 0.15  # the next slot was at +0.1: the worker is 0.05 s late

    assert worker.wait(stop) == pytest.approx(base + 0.1)


def test_a_worker_reserves_the_next_sends_of_its_batch_at_once(
    app: Flask, clock: Clock, stop: threading.Event
) -> None:
    worker, other = pacer(app, clock), pacer(app, clock)
    base = clock.now

    assert worker.wait(stop, 1, upcoming=[1, 1, 1, 1]) == pytest.approx(base)
    # 0.25 s reserved: this send and the next one (0.1 + 0.1; a third would pass the block).
    assert other.wait(stop, 1) == pytest.approx(base + 0.2)
    assert worker.wait(stop, 1, upcoming=[1, 1]) == pytest.approx(base + 0.1)  # prepaid
    assert worker.wait(stop, 1, upcoming=[1]) == pytest.approx(base + 0.3)  # a new block
    assert BLOCK_SECONDS == 0.25


def test_a_batch_gone_otherwise_drops_what_was_reserved_for_it(
    app: Flask, clock: Clock, stop: threading.Event
) -> None:
    worker = pacer(app, clock)
    base = clock.now
    worker.wait(stop, 1, upcoming=[1])  # reserves 0.2 s

    # The next send turned out to have two recipients: the prepaid 0.1 s slot does not do.
    assert worker.wait(stop, 2) == pytest.approx(base + 0.2)


def test_a_pause_holds_every_worker(app: Flask, clock: Clock, stop: threading.Event) -> None:
    worker, other = pacer(app, clock), pacer(app, clock)
    worker.wait(stop)

    worker.pause(1.0)

    assert other.wait(stop) == pytest.approx(clock.now + 1.1)


def test_no_rate_reserves_nothing(app: Flask, clock: Clock, stop: threading.Event) -> None:
    assert pacer(app, clock, rate=0).wait(stop, 3) is None
    assert db.session.get(SendRate, "email") is None


@pytest.mark.parametrize(
    ("rate", "logged"),
    [
        (0.0, "sending is unlimited: no send rate is set (all workers)"),
        (14.0, "sending at most 14 recipients a second (all workers)"),
    ],
)
def test_the_log_says_the_rate_or_that_sending_is_unlimited(
    app: Flask,
    clock: Clock,
    stop: threading.Event,
    caplog: pytest.LogCaptureFixture,
    rate: float,
    logged: str,
) -> None:
    caplog.set_level("INFO", logger="formrelay.worker")

    pacer(app, clock, rate).wait(stop, 1)

    assert [r.getMessage() for r in caplog.records if r.name == "formrelay.worker"] == [logged]
