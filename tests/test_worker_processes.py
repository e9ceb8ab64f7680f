"""Worker processes (`formrelay worker`) against a real SMTP server and database.

Each test starts real processes with the environment an operator would set, and judges them by
what the SMTP server received (counted by Message-ID) and by the rows left in the outbox.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from formrelay.delivery.message import message_id
from formrelay.extensions import db
from formrelay.models import Delivery, Form, utcnow
from formrelay.settings import get_settings
from formrelay.worker.priority import autogroup_nice

from .conftest import BASE_URL
from .factories import make_form
from .mailserver import MailServer, RecordingHandler
from .servers import wait_until
from .steps import deliveries

FORMRELAY = str(Path(sys.executable).with_name("formrelay"))
SENDER = "formrelay@forms.test"


# -- a mail server that can be slow and says what it is receiving ---------------------------
@dataclass
class ObservedHandler(RecordingHandler):
    """Records like RecordingHandler, after waiting `delay` seconds in DATA; `started` lists
    the Message-ID of every message whose DATA began, in order."""

    delay: float = 0.0
    started: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        headers = message_from_bytes(bytes(envelope.content), policy=policy.default)
        with self.lock:
            self.started.append(str(headers["Message-ID"]))
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class ObservedMailServer(MailServer):
    def __init__(self, delay: float) -> None:
        super().__init__(ObservedHandler(delay=delay))

    def message_ids(self) -> list[str]:
        with self.handler.lock:
            return [str(r.message["Message-ID"]) for r in self.received]


@pytest.fixture
def mail_server() -> Iterator[Callable[..., ObservedMailServer]]:
    """Start an SMTP server: `mail_server(delay=seconds per message)`."""
    servers: list[ObservedMailServer] = []

    def start(delay: float = 0.0) -> ObservedMailServer:
        server = ObservedMailServer(delay)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# -- worker processes ------------------------------------------------------------------------
class WorkerProcess:
    """`formrelay worker [args]` with its output kept in a log file."""

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, *, own_session: bool = False
    ) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [FORMRELAY, "worker", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=log.parent,
                start_new_session=own_session,  # as a process manager starts it
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def sent(self) -> list[int]:
        """Ids of the deliveries this process recorded as sent (from its log)."""
        return [int(i) for i in re.findall(r"delivery (\d+): sent", self.output())]

    def wait_started(self, timeout: float = 15.0) -> None:
        wait_until(lambda: "worker started" in self.output(), timeout, self.describe)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        return self.process.wait(timeout)

    def describe(self) -> str:
        return f"worker {self.process.pid} output:\n{self.output()[-3000:]}"


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `formrelay worker` processes on the test database:
    `workers(smtp_port, *args, FORMRELAY_WORKER_BATCH_SIZE="5", ...)`. All are killed afterwards."""
    started: list[WorkerProcess] = []

    def start(
        smtp_port: int, *args: str, own_session: bool = False, **environment: str
    ) -> WorkerProcess:
        env = {
            **os.environ,  # conftest's clean_environment has removed developers' settings
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret",
            "FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance"),
            "FORMRELAY_BASE_URL": BASE_URL,
            "MAIL_BACKEND": "smtp",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(smtp_port),
            "MAIL_DEFAULT_SENDER": SENDER,
            "FORMRELAY_MAIL_TIMEOUT": "10",
            "FORMRELAY_WORKER_POLL_SECONDS": "0.1",
            **environment,
        }
        log = tmp_path / f"worker-{len(started) + 1}.log"
        worker = WorkerProcess(list(args), env, log, own_session=own_session)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


# -- the outbox, as the test sees it -----------------------------------------------------------
def submit_many(client: FlaskClient, count: int) -> None:
    """Post `count` submissions to the form (made beforehand)."""
    form = db.session.scalars(select(Form)).one()
    for n in range(count):
        response = client.post(f"/f/{form.key}", data={"message": f"submission {n}"})
        assert response.status_code == 303


def status_counts() -> Counter[str]:
    return Counter(d.status for d in deliveries())


def expected_message_ids(app: Flask) -> set[str]:
    settings = get_settings(app)
    return {message_id(d, settings) for d in deliveries()}


def all_sent(total: int) -> Callable[[], bool]:
    return lambda: status_counts()["sent"] == total


# -- the tests -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_workers_send_every_delivery_exactly_once(databases, app, client, mail_server, workers):
    if databases.name != "postgresql":
        pytest.skip(
            "200 deliveries raced for by two workers (FOR UPDATE SKIP LOCKED) is the "
            "PostgreSQL case; SQLite: test_two_workers_and_the_web_app_share_a_sqlite_database"
        )
    smtp = mail_server()
    first = workers(smtp.port, FORMRELAY_WORKER_BATCH_SIZE="10")
    second = workers(smtp.port, FORMRELAY_WORKER_BATCH_SIZE="10")
    first.wait_started()
    second.wait_started()

    make_form(db.session, recipients=("a@example.com", "b@example.com"))
    submit_many(client, 100)
    wait_until(all_sent(200), 60, lambda: f"{status_counts()}")

    for worker in (first, second):
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.describe()

    received = smtp.message_ids()
    assert len(received) == 200
    assert set(received) == expected_message_ids(app)
    assert sorted(first.sent() + second.sent()) == [d.id for d in deliveries()]
    assert first.sent() and second.sent(), "both workers should have sent some"


@pytest.mark.slow
def test_two_workers_and_the_web_app_share_a_sqlite_database(
    databases, app, client, mail_server, workers
):
    if databases.name != "sqlite":
        pytest.skip("PostgreSQL: see test_two_workers_send_every_delivery_exactly_once")
    smtp = mail_server()
    first = workers(smtp.port, FORMRELAY_WORKER_BATCH_SIZE="5")
    second = workers(smtp.port, FORMRELAY_WORKER_BATCH_SIZE="5")
    first.wait_started()
    second.wait_started()

    # The workers beat (write) while the factory reads, then writes: it begins as a writer.
    make_form(db.session, recipients=("a@example.com", "b@example.com"))
    submit_many(client, 30)  # while the workers send
    wait_until(all_sent(60), 30, lambda: f"{status_counts()}")
    for worker in (first, second):
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.describe()

    received = smtp.message_ids()
    assert len(received) == 60
    assert set(received) == expected_message_ids(app)
    assert sorted(first.sent() + second.sent()) == [d.id for d in deliveries()]
    assert "locked" not in first.output() + second.output()


@pytest.mark.slow
def test_a_mail_server_slower_than_the_grace_period_never_gets_a_message_twice(
    app, client, mail_server, workers
):
    # Each message takes 2 s, longer than both the 1.5 s grace and the 2 s lease: only the
    # beats (every 0.5 s, renewing the leases) keep the other worker from taking rows over.
    smtp = mail_server(delay=2.0)
    settings = {
        "FORMRELAY_WORKER_BATCH_SIZE": "3",
        "FORMRELAY_WORKER_HEARTBEAT_SECONDS": "0.5",
        "FORMRELAY_WORKER_GRACE_SECONDS": "1.5",
        "FORMRELAY_LEASE_SECONDS": "2",
    }
    make_form(db.session, recipients=("a@example.com", "b@example.com"))
    submit_many(client, 3)
    first = workers(smtp.port, **settings)
    first.wait_started()
    wait_until(lambda: status_counts()["sending"] == 3, 10, first.describe)
    second = workers(smtp.port, **settings)  # idle beside the slow one, looking every 0.1 s
    second.wait_started()

    wait_until(all_sent(6), 40, lambda: f"{status_counts()}\n{first.describe()}")
    for worker in (first, second):
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.describe()

    received = smtp.message_ids()
    assert sorted(received) == sorted(expected_message_ids(app))  # each exactly once
    assert [d.attempts for d in deliveries()] == [1] * 6
    assert "lease lost" not in first.output() + second.output()


@pytest.mark.slow
def test_worker_killed_mid_batch_loses_nothing(app, client, mail_server, workers):
    batch_size = 10
    smtp = mail_server(delay=0.05)
    # A killed worker's rows come back once it has missed its beats for 1.5 s.
    settings = {
        "FORMRELAY_WORKER_BATCH_SIZE": str(batch_size),
        "FORMRELAY_WORKER_HEARTBEAT_SECONDS": "0.5",
        "FORMRELAY_WORKER_GRACE_SECONDS": "1.5",
    }
    make_form(db.session, recipients=("a@example.com", "b@example.com"))
    submit_many(client, 20)

    killed = workers(smtp.port, **settings)
    wait_until(lambda: len(smtp.message_ids()) >= 5, 15, killed.describe)
    killed.signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    in_flight = status_counts()["sending"]
    assert 1 <= in_flight <= batch_size  # killed holding leases
    smtp.handler.delay = 0

    rescuer = workers(smtp.port, **settings)
    wait_until(all_sent(40), 30, rescuer.describe)

    received = smtp.message_ids()
    assert set(received) == expected_message_ids(app)  # nothing lost
    duplicates = len(received) - len(set(received))
    assert duplicates <= in_flight
    print(f"killed with {in_flight} rows in flight; {duplicates} messages sent twice")  # -rP
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait() == 0, rescuer.describe()


@pytest.mark.slow
def test_sigterm_finishes_the_message_in_hand_and_hands_back_the_rest(
    app, client, mail_server, workers
):
    smtp = mail_server(delay=0.3)
    make_form(db.session, recipients=("a@example.com", "b@example.com"))
    submit_many(client, 4)
    worker = workers(smtp.port)
    wait_until(lambda: len(smtp.handler.started) == 2, 15, worker.describe)
    in_hand = smtp.handler.started[1]  # its DATA is being received right now

    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.describe()
    smtp.handler.delay = 0

    assert smtp.message_ids() == smtp.handler.started[:2]  # the message in hand arrived...
    settings = get_settings(app)
    rows = {message_id(d, settings): d for d in deliveries()}
    assert rows[in_hand].status == "sent"  # ...and was recorded as sent
    untried = [d for mid, d in rows.items() if mid not in smtp.handler.started]
    assert len(untried) == 6
    assert {(d.status, d.attempts, d.lease_expires_at) for d in untried} == {("pending", 0, None)}

    successor = workers(smtp.port, "--once")
    assert successor.wait() == 0, successor.describe()
    assert "6 deliveries processed" in successor.output()
    received = smtp.message_ids()
    assert sorted(received) == sorted(rows)  # every message once


def test_worker_once_sends_what_is_due_and_exits(app, client, mail_server, workers):
    smtp = mail_server()
    make_form(db.session, recipients=("a@example.com", "b@example.com"))
    submit_many(client, 2)
    later = deliveries()[-1]
    db.session.execute(
        update(Delivery)
        .where(Delivery.id == later.id)
        .values(next_attempt_at=utcnow() + timedelta(hours=1))
    )
    db.session.commit()

    worker = workers(smtp.port, "--once")

    assert worker.wait() == 0, worker.describe()
    assert "3 deliveries processed" in worker.output()
    assert len(smtp.message_ids()) == 3
    assert [d.status for d in deliveries()] == ["sent", "sent", "sent", "pending"]


# -- the worker's CPU priority -----------------------------------------------------------------
def nice_of_each_thread(pid: int) -> set[int]:
    """The nice value of every thread of `pid` (field 19 of /proc/<pid>/task/<tid>/stat)."""
    values = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        values.add(int(fields[16]))
    return values


def autogroup(pid: int) -> str:
    """What Linux says of the session's autogroup: "/autogroup-9 nice 0", or nothing."""
    return Path(f"/proc/{pid}/autogroup").read_text()


needs_autogroups = pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists(), reason="Linux with autogroups"
)


@needs_autogroups
def test_the_worker_gives_the_cpu_to_the_web_in_a_session_of_its_own(mail_server, workers):
    worker = workers(mail_server().port, own_session=True, FORMRELAY_WORKER_NICE="7")
    worker.wait_started()
    threads = Path(f"/proc/{worker.process.pid}/task")
    wait_until(lambda: len(list(threads.iterdir())) >= 2, 10, worker.describe)  # its heartbeat

    assert nice_of_each_thread(worker.process.pid) == {7}  # the heartbeat's thread too
    assert autogroup_nice(autogroup(worker.process.pid)) == 7  # weighed between sessions
    assert "running at nice 7" in worker.output()


@needs_autogroups
def test_a_worker_sharing_its_session_lowers_only_itself(mail_server, workers):
    ours = autogroup(os.getpid())  # empty where pytest's session has no autogroup
    worker = workers(mail_server().port, FORMRELAY_WORKER_NICE="7")  # in pytest's session
    worker.wait_started()

    assert nice_of_each_thread(worker.process.pid) == {7}
    assert autogroup(worker.process.pid) == ours  # the session's others not lowered


@pytest.mark.parametrize(
    ("text", "nice"),
    [
        ("/autogroup-85 nice 0\n", 0),
        ("/autogroup-9 nice 7\n", 7),
        ("/autogroup-12 nice -3\n", -3),
        ("", None),  # a session in no autogroup of its own: nothing to lower, no error
        ("garbage", None),
    ],
)
def test_the_autogroup_file_is_read_as_linux_writes_it(text, nice):
    assert autogroup_nice(text) == nice


def test_nice_zero_leaves_the_worker_as_started(mail_server, workers):
    started_at = os.getpriority(os.PRIO_PROCESS, 0)
    worker = workers(mail_server().port, own_session=True, FORMRELAY_WORKER_NICE="0")
    worker.wait_started()

    assert nice_of_each_thread(worker.process.pid) == {started_at}
    assert "running at nice" not in worker.output()
