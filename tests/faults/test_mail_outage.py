"""The mail server away for a while, then back: everything is delivered, nothing given up."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select

from formrelay.models import Delivery

from ..servers import wait_until
from .conftest import Load, create_form, settle


@pytest.mark.fault
def test_mail_server_down_then_back_delivers_everything_and_gives_up_nothing(
    sqlite_url, mail, stacks, report, tmp_path
):
    key = create_form(sqlite_url, tmp_path / "instance")
    # Retries after 0.2, 0.4, 0.8 s ... capped at 2 s: many attempts within the outage, and
    # FORMRELAY_MAX_ATTEMPTS (13) is not reached in it.
    stack = stacks(sqlite_url, mail.port, FORMRELAY_MAIL_TIMEOUT="1")
    web, worker = stack.web(), stack.worker()
    load = Load(stack.form_url(key), duration=10.0, rate=40).start()

    mail.stop()  # 0-3 s: connections refused
    load.at(3.0)
    mail.black_hole()  # 3-5 s: connections accepted, no greeting (FORMRELAY_MAIL_TIMEOUT)
    load.at(5.0)
    mail.refuse("451 4.3.0 Temporary local problem, try again later")
    mail.start()  # 5-7 s: up, but every message deferred with 451
    load.at(7.0)
    mail.refuse(None)  # healthy from 7 s
    back = load.elapsed()
    received_before_back = sum(mail.markers().values())
    # How long the backlog of the outage takes to arrive once the server is back.
    backlog = load.acknowledged()
    catch_up = wait_until(lambda: all(mail.markers()[m] for m in backlog), 30, worker.describe)
    load.join()
    ledger = settle(sqlite_url, load.acked, mail)
    attempts = delivery_attempts(sqlite_url)

    report(
        "mail-outage[sqlite]",
        acknowledged=ledger.acknowledged,
        delivered=ledger.delivered,
        lost=ledger.lost,
        duplicated=ledger.duplicated,
        received_during_outage=received_before_back,
        max_attempts=max(attempts),
        retried=sum(1 for a in attempts if a > 1),
        outage_s=back,
        backlog=len(backlog),
        backlog_delivered_in_s=catch_up,
        deliveries=dict(ledger.statuses),
        outcomes=dict(load.outcomes()),
    )
    assert not load.problems
    assert received_before_back == 0  # the server really took nothing while it was away
    assert not load.refusals  # the web answered 2xx all along: mail is not on its path
    assert ledger.lost == 0, ledger.missing
    assert ledger.duplicated == 0  # a deferred or unreachable server took no copy
    assert set(ledger.statuses) == {"sent"}  # nothing dead: every failure was transient
    assert max(attempts) > 3  # the outage was long enough to be retried several times
    assert web.running and worker.running


def delivery_attempts(database_url: str) -> list[int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(Delivery.attempts)))
    finally:
        engine.dispose()
