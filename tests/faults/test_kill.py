"""kill -9 of the web server and of the worker under load: nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal

import pytest

from ..servers import wait_until
from .conftest import Load, create_form, settle

LOAD_SECONDS = 12.0


@pytest.mark.fault
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_of_web_and_worker_under_load_loses_no_acknowledged_submission(
    backend, request, mail, stacks, report, tmp_path
):
    database_url = request.getfixturevalue(f"{backend}_url")
    key = create_form(database_url, tmp_path / "instance")
    stack = stacks(database_url, mail.port)
    web, worker = stack.web(), stack.worker()
    load = Load(stack.form_url(key), duration=LOAD_SECONDS).start()

    kills = {"web": 0, "worker": 0}
    web_outages: list[float] = []  # seconds from a web kill to the next 2xx

    def kill_web() -> None:
        web.kill9()
        killed_at = load.elapsed()
        kills["web"] += 1
        web.start()
        stack.wait_web(web)
        wait_for_success(load, killed_at, web_outages)

    def kill_worker() -> None:
        worker.kill9()
        kills["worker"] += 1
        worker.start()

    load.at(2.0)
    kill_web()
    load.at(4.0)
    kill_worker()
    load.at(6.5)
    kill_worker()  # both at once: a host losing its processes
    kill_web()
    load.at(9.0)
    kill_worker()
    load.join()
    ledger = settle(database_url, load.acked, mail)

    report(
        f"kill-9[{backend}]",
        attempts=sum(load.outcomes().values()),
        acknowledged=ledger.acknowledged,
        stored=ledger.stored,
        stored_unacknowledged=ledger.stored_unacknowledged,
        delivered=ledger.delivered,
        lost=ledger.lost,
        duplicated=ledger.duplicated,
        web_kills=kills["web"],
        worker_kills=kills["worker"],
        web_outage_s="/".join(f"{s:.2f}" for s in web_outages),
        outcomes=dict(load.outcomes()),
        deliveries=dict(ledger.statuses),
    )
    assert not load.problems
    assert ledger.acknowledged > 100, "too little load to prove anything"
    assert ledger.lost == 0, f"lost: {ledger.missing}\n{worker.describe()}"
    # Only a worker killed between the SMTP server's 250 and recording "sent" sends twice.
    assert ledger.duplicated <= kills["worker"]
    assert set(ledger.statuses) == {"sent"}
    # A killed web server costs connections, never a wrong answer.
    assert not load.refusals, load.refusals


def wait_for_success(load: Load, since: float, outages: list[float], timeout: float = 20) -> None:
    """Wait for the first 2xx after `since` (load time); add how long it took to `outages`."""
    wait_until(
        lambda: load.first_success_after(since) is not None,
        timeout,
        lambda: "no 2xx since restarting the web server",
        interval=0.05,
    )
    gap = load.first_success_after(since)
    assert gap is not None
    outages.append(gap)


def committers(database_url: str) -> list[int]:
    """The pids of the committer processes serving the stack on `database_url` (each has
    the environment of the web process that started it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"formrelay.committer" not in f.read():
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"DATABASE_URL={database_url}".encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.fault
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_of_the_committer_under_load_loses_no_acknowledged_submission(
    backend, request, mail, stacks, report, tmp_path
):
    database_url = request.getfixturevalue(f"{backend}_url")
    key = create_form(database_url, tmp_path / "instance")
    stack = stacks(database_url, mail.port)
    stack.web()
    stack.worker()
    load = Load(stack.form_url(key), duration=LOAD_SECONDS).start()
    kills = 0
    outages: list[float] = []
    for at in (2.0, 5.0, 8.0):
        load.at(at)
        # After a kill the web processes store their own and, at the next batch past their
        # spawn throttle, start another committer (under load: there is one by now).
        wait_until(lambda: len(committers(database_url)) == 1, 20, lambda: "no one committer")
        os.kill(committers(database_url)[0], signal.SIGKILL)
        killed_at = load.elapsed()
        kills += 1
        wait_for_success(load, killed_at, outages)
    load.join()
    ledger = settle(database_url, load.acked, mail)
    report(
        f"kill-9-committer[{backend}]",
        attempts=sum(load.outcomes().values()),
        acknowledged=ledger.acknowledged,
        stored=ledger.stored,
        stored_unacknowledged=ledger.stored_unacknowledged,
        delivered=ledger.delivered,
        lost=ledger.lost,
        duplicated=ledger.duplicated,
        committer_kills=kills,
        outage_s="/".join(f"{s:.2f}" for s in outages),
        outcomes=dict(load.outcomes()),
    )
    assert not load.problems
    assert ledger.acknowledged > 100, "too little load to prove anything"
    assert ledger.lost == 0, f"lost: {ledger.missing}"
    assert ledger.duplicated == 0  # the worker was not touched
    assert set(ledger.statuses) == {"sent"}
    # A batch the committer took and never answered is a 503 (it may be stored), nothing else.
    assert {status for status, _, _ in load.refusals} <= {503}, load.refusals
