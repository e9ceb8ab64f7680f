"""Fault tests: formrelay's real processes under load while something breaks.

The web server and the worker run as the Procfile runs them (its `web` and `worker` lines, in
production mode), each in its own process group so that a test can kill -9 all of it. A load
generator posts submissions, each carrying a unique marker, and keeps every acknowledgement
(2xx and the submission id). Afterwards the database and the SMTP server are asked what became
of each acknowledged submission: stored, delivered, delivered twice.

The tests marked `fault` take tens of seconds each: `make faults` runs them (pytest naming
tests/faults); `make test` (pytest over tests/) deselects them. The quick ones run in both.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from formrelay import create_app
from formrelay.extensions import db
from formrelay.models import Delivery, Submission

from ..conftest import _migrate
from ..factories import make_form
from ..mailserver import RecordingHandler
from ..servers import free_port, procfile, wait_until, without_settings

FAULTS_DIR = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
RECIPIENT = "owner@example.com"
SENDER = "formrelay@forms.example.com"
# The one message a client gets while submissions cannot be stored (web/errors.py).
UNAVAILABLE = "The service cannot store submissions right now; please try again shortly."


# -- which run includes the slow tests -------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault: a fault test of tens of seconds; runs with `make faults` only"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _fault_suite_named(config):
        return
    slow = [item for item in items if item.get_closest_marker("fault")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("fault")]


def _fault_suite_named(config: pytest.Config) -> bool:
    """Whether the command line names tests/faults (or a file in it), or selects `-m fault`."""
    if "fault" in (config.option.markexpr or ""):
        return True
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == FAULTS_DIR or FAULTS_DIR in path.parents:
            return True
    return False


# -- small tools ---------------------------------------------------------------------------------
@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[..., None]:
    """Print one line of figures, past pytest's capture: `report("name", lost=0, ...)`."""

    def emit(name: str, **figures: object) -> None:
        text = " ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
        )
        with capsys.disabled():
            print(f"\nFAULT {name}: {text}")

    return emit


# -- the mail server -----------------------------------------------------------------------------
MARKER = re.compile(r"\bfz-[0-9a-f]{6}-\d+-\d+\b")


class FlakyMailServer:
    """aiosmtpd on one port that can go away (connections refused), turn into a black hole
    (connections accepted, never answered), answer DATA with an error, and come back.

    `markers()` counts, per marker, the messages whose text part carries it.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = RecordingHandler()
        self.controller: Controller | None = None
        self._hole: socket.socket | None = None
        self._counted = 0
        self._markers: Counter[str] = Counter()

    def start(self) -> FlakyMailServer:
        self.stop()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        if self._hole is not None:
            self._hole.close()
            self._hole = None

    def black_hole(self) -> None:
        """Listen without ever accepting: the kernel completes each connection, and the
        client then waits in vain for the greeting until its timeout."""
        self.stop()
        hole = socket.socket()
        hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hole.bind(("127.0.0.1", self.port))
        hole.listen(64)
        self._hole = hole

    def refuse(self, reply: str | None) -> None:
        """Answer every DATA with `reply` (e.g. "451 4.3.0 Try again later"); None: accept."""
        self.handler.refuse_with = reply

    def markers(self) -> Counter[str]:
        with self.handler.lock:
            new = self.handler.received[self._counted :]
            self._counted += len(new)
        for received in new:
            body = received.message.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            self._markers.update(set(MARKER.findall(text)))
        return self._markers


@pytest.fixture
def mail() -> Iterator[FlakyMailServer]:
    server = FlakyMailServer().start()
    yield server
    server.stop()


# -- databases -----------------------------------------------------------------------------------
def migrated(url: str, workdir: Path) -> str:
    """Bring the database at `url` to the latest schema; returns `url`."""
    _migrate(url, workdir / "instance-migrate")
    return url


def migrated_sqlite(path: Path) -> str:
    return migrated(f"sqlite:///{path}", path.parent)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path / "formrelay.sqlite3")


def _pg(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def postgresql_url(tmp_path: Path) -> Iterator[str]:
    """A fresh database on the machine's main cluster (127.0.0.1:5432), dropped afterwards."""
    name = f"formrelay_faults_{os.getpid()}_{secrets.token_hex(3)}"
    created = _pg("createdb", "-h", "127.0.0.1", "-U", "postgres", name)
    if created.returncode != 0:
        pytest.skip(f"cannot create a PostgreSQL database on 127.0.0.1:5432: {created.stderr}")
    try:
        yield migrated(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", tmp_path)
    finally:
        _pg("dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", name)


@dataclass
class Cluster:
    """A PostgreSQL cluster of this test run's own, managed with Debian's pg_ctlcluster."""

    version: str
    name: str
    port: int

    def ctl(self, action: str, *options: str) -> None:
        result = _pg(
            "pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action, *options
        )
        assert result.returncode == 0, f"pg_ctlcluster {action}: {result.stderr}"

    def create_database(self, name: str, workdir: Path) -> str:
        """A new database in the cluster, migrated; returns its URL."""
        created = _pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        assert created.returncode == 0, created.stderr
        return migrated(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}", workdir)


@pytest.fixture(scope="module")
def dedicated_cluster() -> Iterator[Cluster]:
    """A new cluster on a free port (trust auth), dropped at the end: the test may restart it
    without touching the machine's main cluster, which other tests use."""
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if not versions or not shutil.which("pg_createcluster"):
        pytest.skip("needs Debian's postgresql-common (pg_createcluster) and a server")
    if os.geteuid() != 0:
        pytest.skip("pg_createcluster needs root to make a dedicated cluster")
    cluster = Cluster(versions[-1], f"formrelay_faults_{os.getpid()}", free_port())
    created = _pg(
        "pg_createcluster",
        "--start-conf",
        "manual",
        "-p",
        str(cluster.port),
        cluster.version,
        cluster.name,
        "--",
        "--auth=trust",
    )
    if created.returncode != 0:
        pytest.skip(f"pg_createcluster failed: {created.stderr.strip()}")
    try:
        cluster.ctl("start")
        yield cluster
    finally:
        _pg("pg_dropcluster", "--stop", cluster.version, cluster.name)
        Path(f"/var/log/postgresql/postgresql-{cluster.version}-{cluster.name}.log").unlink(
            missing_ok=True
        )


def create_form(database_url: str, instance: Path) -> str:
    """Create a form notifying RECIPIENT; returns its key."""
    app = create_app({"database_url": database_url, "instance_path": instance, "secret_key": "x"})
    with app.app_context():
        key = make_form(db.session, recipients=(RECIPIENT,)).key
        db.session.remove()
        db.engine.dispose()
    return key


# -- formrelay's processes -----------------------------------------------------------------------
class Service:
    """One Procfile process (`web` or `worker`), or another `command`, in a process group of
    its own, so that kill -9 takes the web server's main process and workers together; each
    run's output goes to its own file."""

    def __init__(
        self, kind: str, env: dict[str, str], workdir: Path, command: list[str] | None = None
    ) -> None:
        self.kind, self.env, self.workdir = kind, env, workdir
        self.command = command or procfile(kind)
        self.logs: list[Path] = []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        log = self.workdir / f"{self.kind}-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, as a platform stops a process; SIGKILL if it has not gone in 20 s."""
        if not self.running:
            return
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def output(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs if log.exists())

    def describe(self) -> str:
        return f"{self.kind} output (tail):\n{self.output()[-3000:]}"


@dataclass
class Stack:
    """formrelay's web and worker processes on one database, mailing to one SMTP server."""

    database_url: str
    smtp_port: int
    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    services: list[Service] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        keep = without_settings(os.environ)
        return {
            **keep,
            "PATH": f"{BIN}:{keep.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "FORMRELAY_ENV": "production",
            "SECRET_KEY": "fault-test-secret",
            "DATABASE_URL": self.database_url,
            "FORMRELAY_INSTANCE_PATH": str(self.workdir / "instance"),
            "FORMRELAY_BASE_URL": "https://forms.example.com",
            # The load comes from one address: no per-address limits or hourly ceilings.
            "FORMRELAY_RATE_LIMIT": "1000000/minute",
            "FORMRELAY_RATE_LIMIT_GLOBAL": "1000000/minute",
            "FORMRELAY_NOTIFY_LIMIT_PER_FORM": "0",
            "FORMRELAY_NOTIFY_LIMIT_GLOBAL": "0",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "2",
            "MAIL_BACKEND": "smtp",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(self.smtp_port),
            "MAIL_DEFAULT_SENDER": SENDER,
            "FORMRELAY_MAIL_TIMEOUT": "5",
            "FORMRELAY_WORKER_POLL_SECONDS": "0.1",
            # A killed worker's rows come back once it has missed its beats for 2 s.
            "FORMRELAY_WORKER_HEARTBEAT_SECONDS": "0.5",
            "FORMRELAY_WORKER_GRACE_SECONDS": "2",
            "FORMRELAY_RETRY_BASE_SECONDS": "0.2",
            "FORMRELAY_RETRY_MAX_DELAY_SECONDS": "2",
            **self.settings,
        }

    def service(self, kind: str) -> Service:
        service = Service(kind, self.env(), self.workdir)
        self.services.append(service)
        return service

    def web(self) -> Service:
        """The web server, started and answering."""
        web = self.service("web").start()
        self.wait_web(web)
        return web

    def wait_web(self, web: Service, timeout: float = 30) -> float:
        def answers() -> bool:
            if not web.running:
                raise AssertionError(f"the web server exited; {web.describe()}")
            try:
                httpx.get(self.base_url + "/", timeout=1)
            except httpx.TransportError:
                return False
            return True

        return wait_until(answers, timeout, web.describe, interval=0.05)

    def worker(self) -> Service:
        """A worker, started and looking for deliveries."""
        worker = self.service("worker").start()
        self.wait_worker(worker)
        return worker

    def wait_worker(self, worker: Service, timeout: float = 30) -> float:
        log = worker.logs[-1]
        return wait_until(
            lambda: "worker started" in log.read_text(errors="replace"),
            timeout,
            worker.describe,
            interval=0.05,
        )

    def form_url(self, key: str) -> str:
        return f"{self.base_url}/f/{key}"

    def stop(self) -> None:
        for service in self.services:
            service.stop()


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """`stacks(database_url, smtp_port, **settings)`: a Stack, whose processes are stopped
    afterwards."""
    made: list[Stack] = []

    def make(database_url: str, smtp_port: int, **settings: str) -> Stack:
        workdir = tmp_path / f"stack-{len(made) + 1}"
        workdir.mkdir()
        stack = Stack(database_url, smtp_port, workdir, settings)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.stop()


# -- the load --------------------------------------------------------------------------------
@dataclass
class Attempt:
    at: float  # seconds since the load started
    outcome: str  # the HTTP status, or the name of the transport error


class Load:
    """Threads posting submissions for at most `duration` seconds at about `rate` per second
    in all; each submission carries a unique marker. Keeps every acknowledgement (2xx) with
    the submission id it names, and the outcome of every attempt."""

    def __init__(
        self, url: str, *, duration: float, rate: float = 150, threads: int = 4, padding: int = 0
    ) -> None:
        self.url, self.duration, self.rate, self.threads = url, duration, rate, threads
        self.padding = "x" * padding
        self.run_id = secrets.token_hex(3)
        self.acked: dict[str, int] = {}
        self.attempts: list[Attempt] = []
        # (status, Retry-After, error message) of every answer that was not 2xx
        self.refusals: Counter[tuple[int, str | None, str]] = Counter()
        self.problems: list[str] = []  # a 2xx that does not say which submission it stored
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0.0

    def start(self) -> Load:
        self.started = time.monotonic()
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), name=f"load-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def at(self, moment: float) -> None:
        """Sleep until `moment` seconds into the load (the tests' timetable)."""
        time.sleep(max(0.0, moment - self.elapsed()))

    def join(self) -> Load:
        for thread in self._threads:
            thread.join(self.duration + 30)
            assert not thread.is_alive(), "a load thread did not finish"
        return self

    def stop(self) -> Load:
        self._stop.set()
        return self.join()

    def _run(self, thread: int) -> None:
        interval = self.threads / self.rate
        next_at = time.monotonic()
        n = 0
        with httpx.Client(timeout=10, headers={"Accept": "application/json"}) as client:
            while not self._stop.is_set() and self.elapsed() < self.duration:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at, time.monotonic()) + interval
                n += 1
                marker = f"fz-{self.run_id}-{thread}-{n}"
                self._post(client, marker)

    def _post(self, client: httpx.Client, marker: str) -> None:
        fields = {"email": "load@example.org", "marker": marker}
        if self.padding:
            fields["message"] = self.padding
        at = self.elapsed()
        try:
            response = client.post(self.url, data=fields)
        except httpx.TransportError as exc:
            outcome = type(exc).__name__
        else:
            outcome = str(response.status_code)
            self._answer(marker, response)
        with self._lock:
            self.attempts.append(Attempt(at, outcome))

    def _answer(self, marker: str, response: httpx.Response) -> None:
        try:
            body: Any = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        with self._lock:
            if response.is_success:
                if body.get("ok") is True and isinstance(body.get("id"), int):
                    self.acked[marker] = body["id"]
                else:
                    self.problems.append(f"{response.status_code} {body}")
            else:
                self.refusals[
                    (response.status_code, response.headers.get("Retry-After"), body.get("error"))
                ] += 1

    # -- figures ------------------------------------------------------------------------------
    def acknowledged(self) -> list[str]:
        """The markers acknowledged so far."""
        with self._lock:
            return list(self.acked)

    def outcomes(self, start: float = 0.0, end: float = float("inf")) -> Counter[str]:
        with self._lock:
            return Counter(a.outcome for a in self.attempts if start <= a.at < end)

    def first_success_after(self, moment: float) -> float | None:
        """Seconds from `moment` (load time) to the first 2xx sent after it."""
        with self._lock:
            times = [a.at for a in self.attempts if a.at >= moment and a.outcome.startswith("2")]
        return min(times) - moment if times else None


# -- what became of the acknowledged submissions -------------------------------------------------
@dataclass
class Ledger:
    acknowledged: int
    stored: int  # acknowledged submissions found under their id, with their marker
    stored_unacknowledged: int  # committed, but the answer never reached the client
    delivered: int  # acknowledged submissions whose marker reached the SMTP server
    lost: int  # acknowledged but not stored, or never delivered
    duplicated: int  # messages received beyond the first, per marker
    statuses: Counter[str]  # every delivery row by status
    missing: list[str]  # markers of the lost submissions (the first few)


def stored_markers(database_url: str) -> dict[str, int]:
    """Every stored submission's marker, with its id."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            rows = session.execute(select(Submission.id, Submission.fields)).all()
    finally:
        engine.dispose()
    out: dict[str, int] = {}
    for submission_id, fields in rows:
        for name, value in fields:
            if name == "marker":
                out[value] = submission_id
    return out


def delivery_statuses(database_url: str) -> Counter[str]:
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)
            ).all()
    finally:
        engine.dispose()
    return Counter({status: count for status, count in rows})


def settle(
    database_url: str, acked: dict[str, int], mail: FlakyMailServer, timeout: float = 40
) -> Ledger:
    """Wait until every delivery is finished (sent or dead) and every acknowledged marker has
    reached the SMTP server, or `timeout`; then count."""
    unfinished = ("pending", "sending", "failed")

    def done() -> bool:
        statuses = delivery_statuses(database_url)
        if any(statuses[s] for s in unfinished):
            return False
        received = mail.markers()
        return all(received[m] for m in acked)

    with contextlib.suppress(AssertionError):  # counted below: the figures say what is missing
        wait_until(done, timeout, interval=0.05)
    stored = stored_markers(database_url)
    received = mail.markers()
    in_db = [m for m, i in acked.items() if stored.get(m) == i]
    delivered = [m for m in acked if received[m]]
    lost = [m for m in acked if stored.get(m) != acked[m] or not received[m]]
    return Ledger(
        acknowledged=len(acked),
        stored=len(in_db),
        stored_unacknowledged=len(stored) - len(in_db),
        delivered=len(delivered),
        lost=len(lost),
        duplicated=sum(count - 1 for count in received.values() if count > 1),
        statuses=delivery_statuses(database_url),
        missing=lost[:10],
    )
