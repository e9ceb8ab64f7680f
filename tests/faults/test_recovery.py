"""Crash recovery in seconds: SIGKILL of the worker, and of `formrelay serve` as a whole, under
load; after the restart every acknowledged submission is delivered within 30 s.

The heartbeat settings are the defaults (a beat every 5 s, dead after 15 s silent, a lease of
300 s): the deliveries the killed worker held come back because its heartbeat stopped, not
because their lease ran out, which would take five minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..mailserver import RecordingHandler
from .conftest import (
    BIN,
    MARKER,
    FlakyMailServer,
    Load,
    Service,
    Stack,
    create_form,
    settle,
    wait_until,
)

DEFAULTS = {
    "FORMRELAY_WORKER_HEARTBEAT_SECONDS": "5",
    "FORMRELAY_WORKER_GRACE_SECONDS": "15",
    "FORMRELAY_LEASE_SECONDS": "300",
}
WITHIN_SECONDS = 30.0


@dataclass
class TimedHandler(RecordingHandler):
    """Records like RecordingHandler after `delay` seconds in DATA (so that a killed worker
    holds rows it is sending), keeping the time each marker first arrived."""

    delay: float = 0.005
    arrived: dict[str, float] = field(default_factory=dict)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        now = time.monotonic()
        text = bytes(envelope.content).decode("utf-8", "replace")
        with self.lock:
            for marker in MARKER.findall(text.replace("=\r\n", "")):
                self.arrived.setdefault(marker, now)
        return await super().handle_DATA(server, session, envelope)


def serve(stack: Stack) -> Service:
    """`formrelay serve` on the stack's port: the web app and a worker in one process."""
    command = [str(BIN / "formrelay"), "serve", "--host", "127.0.0.1", "--port", str(stack.port)]
    service = Service("serve", stack.env(), stack.workdir, command)
    stack.services.append(service)
    return service.start()


@pytest.mark.fault
@pytest.mark.parametrize("killed", ["worker", "serve"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_under_load_then_restart_delivers_everything_within_30_s(
    backend, killed, request, stacks, report, tmp_path
):
    database_url = request.getfixturevalue(f"{backend}_url")
    mail = FlakyMailServer()
    mail.handler = handler = TimedHandler()
    mail.start()
    request.addfinalizer(mail.stop)
    key = create_form(database_url, tmp_path / "instance")
    stack: Stack = stacks(database_url, mail.port, **DEFAULTS)

    if killed == "worker":
        stack.web()
        victim: Service = stack.worker()
    else:
        victim = serve(stack)
        stack.wait_web(victim)
    load = Load(stack.form_url(key), duration=10.0, rate=80).start()

    load.at(4.0)
    victim.kill9()
    victim.start()
    restarted = time.monotonic()
    if killed == "serve":
        stack.wait_web(victim)
    else:
        stack.wait_worker(victim)
    load.join()
    acked = dict(load.acked)

    def everything_arrived() -> bool:
        with handler.lock:
            return all(m in handler.arrived for m in acked)

    with contextlib.suppress(AssertionError):  # the figures below say what is missing
        wait_until(everything_arrived, WITHIN_SECONDS + 15, victim.describe)
    ledger = settle(database_url, acked, mail, timeout=10)
    with handler.lock:
        after_restart = [handler.arrived[m] - restarted for m in acked if m in handler.arrived]
    slowest = max(after_restart)

    report(
        f"crash-recovery[{backend},{killed}]",
        acknowledged=ledger.acknowledged,
        delivered=ledger.delivered,
        lost=ledger.lost,
        duplicated=ledger.duplicated,
        slowest_after_restart_s=slowest,
        target_s=WITHIN_SECONDS,
        deliveries=dict(ledger.statuses),
    )
    assert not load.problems
    assert ledger.acknowledged > 100, "too little load to prove anything"
    assert ledger.lost == 0, f"lost: {ledger.missing}\n{victim.describe()}"
    assert ledger.duplicated <= 1  # one kill: at most the message in hand at the moment
    assert slowest <= WITHIN_SECONDS, f"the slowest arrived {slowest:.1f} s after the restart"
    assert set(ledger.statuses) == {"sent"}
