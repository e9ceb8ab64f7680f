"""formrelay's benchmarks: every figure beside its ceiling, measured in one run.

    .venv/bin/python bench/run.py [--quick]
        [--only servers,ingest,delivery,memory,uploads,dashboard]

Servers run as the Procfile runs them (its `web` line, WEB_CONCURRENCY workers) and are
loaded only on 127.0.0.1 by wrk: closed loop for peak throughput, and paced, with requests
arriving as a Poisson process, for latency at a fixed rate (see paced). hey's figure at the
same rate, from bursts of synchronised requests, is reported beside it.
The ingest section measures formrelay beside two reference apps served the same way
(bench/reference_parse.py, bench/reference_commit.py): its reachable ceilings; the
delivery section measures the worker beside a minimal sender (bench/reference_send.py).
The uploads section (bench/uploads.py) streams a 50 MB file to local storage and to S3
(moto), watching the web worker's RSS. The dashboard section (bench/dashboard.py) seeds
a million submissions and measures the owner's pages, search and export through the same server.
Results go to bench/results/latest.json and latest.md; the last lines printed are one
`TARGET <name> <measured> <goal> PASS|MISS` per target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
BODY = (  # five fields, as a contact form sends them
    "name=Ann+Example&email=ann%40example.org&subject=Hello"
    "&message=Hello+there%2C+a+question&phone=%2B44+20+7946+0000"
)
FORM_CT = "application/x-www-form-urlencoded"


# -- measuring tools -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def post_script(headers: dict[str, str] | None = None) -> str:
    """wrk's Lua for POSTing the 5-field form as a JSON client, with `headers` too."""
    return (
        'wrk.method = "POST"\n'
        f'wrk.body = "{BODY}"\n'
        f'wrk.headers["Content-Type"] = "{FORM_CT}"\n'
        'wrk.headers["Accept"] = "application/json"\n'
        + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    )


def wrk(
    url: str,
    seconds: int,
    connections: int,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Peak throughput: wrk, closed loop, POSTing the 5-field form (with `headers` too)."""
    script = workdir / "post.lua"
    script.write_text(post_script(headers))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": rps,
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def paced(
    url: str, rate: float, seconds: int, workdir: Path, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Latency at an offered rate, requests arriving as a Poisson process.

    wrk's delay() hook spaces each connection's requests by random exponential gaps, so
    arrivals are independent, as visitors' are. A connection's cycle is its gap plus the
    response time: a short first run measures that time, and the measured run's gaps are
    shortened by it so that the rate achieved is the rate asked for.
    """
    connections = 32
    probe = _paced_run(url, rate, 2, workdir, connections, 0.0, headers)
    result = _paced_run(url, rate, seconds, workdir, connections, probe["mean_ms"], headers)
    result["offered_rps"] = rate
    return result


def _paced_run(
    url: str,
    rate: float,
    seconds: int,
    workdir: Path,
    connections: int,
    latency_ms: float,
    headers: dict[str, str] | None,
) -> dict[str, Any]:
    gap_ms = max(connections * 1000.0 / rate - latency_ms, 0.0)
    script = workdir / "paced.lua"
    script.write_text(
        post_script(headers) + "local threads = 0\n"
        "function setup(thread) threads = threads + 1; thread:set('n', threads) end\n"
        "function init(args) math.randomseed(os.time() * 100 + n) end\n"
        f"function delay() return -math.log(1 - math.random()) * {gap_ms:.3f} end\n"
        "function done(summary, latency, requests)\n"
        "  io.write(string.format('PACED %d %d %d %d %.1f %d %d\\n', summary.requests,\n"
        "    summary.duration, summary.errors.status, summary.errors.connect\n"
        "    + summary.errors.read + summary.errors.write + summary.errors.timeout,\n"
        "    latency.mean, latency:percentile(50), latency:percentile(99)))\n"
        f"  for _, p in ipairs({{{', '.join(f'{q:g}' for q in QUANTILES)}}}) do\n"
        "    io.write(string.format('Q %g %d\\n', p, latency:percentile(p)))\n"
        "  end\n"
        "  io.write(string.format('Q 100 %d\\n', latency.max))\n"
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fields = re.search(r"PACED (.*)", out).group(1).split()
    requests, duration_us, non_2xx, socket_errors = (int(f) for f in fields[:4])
    mean_us, p50_us, p99_us = float(fields[4]), int(fields[5]), int(fields[6])
    quantiles = [(float(p), int(us) / 1000) for p, us in re.findall(r"^Q (\S+) (\d+)$", out, re.M)]
    return {
        "achieved_rps": requests / (duration_us / 1e6),
        "mean_ms": mean_us / 1000,
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
        "requests": requests,
        "seconds": duration_us / 1e6,
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
        "quantiles": quantiles,
    }


# The percentiles each paced run reports (and its maximum), finest in the tail, so that runs
# taken in turns can be pooled into one distribution: wrk's Lua gives percentiles, not the
# samples.
QUANTILES = (*range(1, 90), *(90 + i / 10 for i in range(100)), 99.95, 99.99)


def pooled_percentile(runs: list[dict[str, Any]], percent: float) -> float:
    """The percentile of every request of `runs` together, from each run's quantiles.

    Each run's share below a latency is read off its quantiles (linearly between them),
    weighted by its requests; the answer is the lowest reported latency at which the
    pooled share reaches `percent`.
    """

    def below(run: dict[str, Any], ms: float) -> float:
        points = run["quantiles"]
        if ms < points[0][1]:
            return 0.0
        for (p0, v0), (p1, v1) in itertools.pairwise(points):
            if v0 <= ms < v1:
                return p0 + (p1 - p0) * (ms - v0) / (v1 - v0)
        return 100.0

    total = sum(run["requests"] for run in runs)
    for ms in sorted({v for run in runs for _, v in run["quantiles"]}):
        if sum(below(run, ms) * run["requests"] for run in runs) / total >= percent:
            return ms
    return max(v for run in runs for _, v in run["quantiles"])


def pooled(runs: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """Paced runs taken in turns at one offered rate, as if they were one run."""
    requests = sum(r["requests"] for r in runs)
    return {
        "achieved_rps": requests / sum(r["seconds"] for r in runs),
        "mean_ms": sum(r["mean_ms"] * r["requests"] for r in runs) / requests,
        "p50_ms": pooled_percentile(runs, 50),
        "p99_ms": pooled_percentile(runs, 99),
        "requests": requests,
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "offered_rps": rate,
        "turns_p99_ms": [r["p99_ms"] for r in runs],
    }


def paced_turns(
    targets: dict[str, tuple[str, float]],
    turns: int,
    seconds: int,
    workdir: Path,
    headers: dict[str, str] | None = None,
    before: Any = None,
) -> dict[str, dict[str, Any]]:
    """Latency of several servers (name: (url, offered rate)) measured in alternating turns.

    Each server's response time is measured once first (as paced does), then each has
    `turns` paced runs of `seconds`, another server going first each turn, `before(name)`
    called before each; each server's runs are pooled into one result.
    """
    connections = 32
    names = list(targets)
    probes: dict[str, float] = {}
    for name in names:
        if before is not None:
            before(name)
        url, rate = targets[name]
        probes[name] = _paced_run(url, rate, 2, workdir, connections, 0.0, headers)["mean_ms"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for turn in range(turns):
        at = turn % len(names)
        for name in names[at:] + names[:at]:
            if before is not None:
                before(name)
            url, rate = targets[name]
            runs[name].append(
                _paced_run(url, rate, seconds, workdir, connections, probes[name], headers)
            )
    return {name: pooled(runs[name], targets[name][1]) for name in names}


def hey(
    url: str, rate: float, seconds: int, workdir: Path, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Latency at a fixed rate as hey measures it; percentiles from its CSV.

    hey -q paces each of its workers on its own ticker, all started together, so requests
    arrive in bursts of one per worker: a figure for comparison, not the target's.
    """
    body = workdir / "body.txt"
    body.write_text(BODY)
    workers = 16
    out = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(workers),
            "-q",
            f"{rate / workers:.2f}",
            "-m",
            "POST",
            "-T",
            FORM_CT,
            "-A",
            "application/json",
            "-D",
            str(body),
            *(arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")),
            "-o",
            "csv",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
    rows = [line.split(",") for line in out.splitlines()[1:] if line.strip()]
    times = sorted(float(r[0]) * 1000 for r in rows)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r[6]] = statuses.get(r[6], 0) + 1

    def pct(p: float) -> float:
        return times[min(len(times) - 1, int(p / 100 * len(times)))] if times else float("nan")

    span = max(float(r[7]) for r in rows) if rows else seconds
    return {
        "offered_rps": rate,
        "achieved_rps": len(rows) / max(span, 1e-6),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "statuses": statuses,
    }


# -- parts of the system under test ---------------------------------------------------------
@dataclass
class MailSink:
    """aiosmtpd in this process; `delay` seconds per message models a slow mail server.

    While `kept` is a list, each message's envelope and bytes as received go into it.
    """

    delay: float = 0.0
    count: int = 0
    port: int = field(default_factory=free_port)
    lock: threading.Lock = field(default_factory=threading.Lock)
    kept: list[tuple[str, list[str], bytes]] | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.count += 1
            if self.kept is not None:
                kept = (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
                self.kept.append(kept)
        return "250 OK"

    @contextmanager
    def running(self) -> Iterator[MailSink]:
        controller = Controller(self, hostname="127.0.0.1", port=self.port)
        controller.start()
        try:
            yield self
        finally:
            controller.stop()


@dataclass
class Database:
    name: str
    url: str
    admin_url: str | None = None  # for dropping a PostgreSQL database afterwards

    @classmethod
    def sqlite(cls, workdir: Path) -> Database:
        return cls("sqlite", f"sqlite:///{workdir / 'bench.sqlite3'}")

    @classmethod
    def postgresql(cls, prefix: str = "formrelay_bench") -> Database | None:
        base = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        name = f"{prefix}_{os.getpid()}"
        try:
            subprocess.run(
                ["psql", base, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True
            )
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            print(f"PostgreSQL not available, skipped: {exc}")
            return None
        return cls("postgresql", base.rsplit("/", 1)[0] + f"/{name}", admin_url=base)

    def another(self, workdir: Path, label: str) -> Database:
        """A second, empty database of the same kind (the worker run's own)."""
        if self.admin_url is None:
            (workdir / label).mkdir(exist_ok=True)
            return Database.sqlite(workdir / label)
        other = Database.postgresql(f"formrelay_bench_{label.replace('-', '_')}")
        if other is None:
            raise RuntimeError("PostgreSQL answered once and then no more")
        return other

    def drop(self) -> None:
        if self.admin_url:
            db = self.url.rsplit("/", 1)[1]
            subprocess.run(
                ["psql", self.admin_url, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"],
                capture_output=True,
                check=False,
            )


def procfile_web() -> str:
    line = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    return line.split(":", 1)[1].strip()


class Stack:
    """formrelay as production runs it: the Procfile's web line and one worker process."""

    def __init__(
        self, workdir: Path, db: Database, mail: MailSink, extra: dict[str, str] | None = None
    ):
        self.workdir = workdir
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FORMRELAY_", "MAIL_"))},
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "FORMRELAY_ENV": "production",
            "SECRET_KEY": "bench-secret",
            "DATABASE_URL": db.url,
            "FORMRELAY_BASE_URL": f"http://127.0.0.1:{self.port}",
            "FORMRELAY_INSTANCE_PATH": str(workdir / "instance"),
            "MAIL_BACKEND": "smtp",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(mail.port),
            "MAIL_DEFAULT_SENDER": "formrelay@example.com",
            "FORMRELAY_WORKER_POLL_SECONDS": "0.2",
            # The load generator is one address: no per-address limits or hourly ceilings
            # (the spam scenario sets its form's own limit, in Redis).
            "FORMRELAY_RATE_LIMIT": "100000000/minute",
            "FORMRELAY_RATE_LIMIT_GLOBAL": "100000000/minute",
            "FORMRELAY_NOTIFY_LIMIT_PER_FORM": "0",
            "FORMRELAY_NOTIFY_LIMIT_GLOBAL": "0",
            "PORT": str(self.port),
            **(extra or {}),
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [str(BIN / "formrelay"), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def prepare(self) -> str:
        """Migrate and create the benchmark form; returns its endpoint on this port."""
        self.cli("db", "upgrade")
        endpoint = self.cli("form", "create", "--name", "Bench", "--to", "owner@example.com")
        return endpoint.strip().splitlines()[-1]

    def start_web(
        self,
        app: str = "formrelay.wsgi:app",
        command: str | None = None,
        source: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """The Procfile's web line (or `command`, same placeholders) serving `app`; with
        `source`, formrelay's package from that folder instead of this checkout's."""
        command = (command or procfile_web()).replace("formrelay.wsgi:app", app)
        env = dict(self.env)
        if source is not None:
            env["PYTHONPATH"] = str(source)  # ahead of the editable install in site-packages
        proc = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                time.sleep(0.5)  # let every worker process finish booting
                return proc
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("web server did not start")

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [str(BIN / "formrelay"), "worker"],
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """SIGTERM to each process group (a server's workers too), SIGKILL to what lingers."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()


def count_rows(db: Database, sql: str) -> int:
    from sqlalchemy import create_engine, text

    from formrelay.settings import normalize_database_url

    engine = create_engine(normalize_database_url(db.url, Path(".")))
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar_one()
    engine.dispose()
    return int(value)


# -- the benchmarks ------------------------------------------------------------------------
@dataclass(frozen=True)
class Baseline:
    """formrelay's code at another git revision, exported for comparison."""

    ref: str
    source: Path  # the folder holding its formrelay package

    @classmethod
    def export(cls, ref: str, workdir: Path) -> Baseline:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True
        )
        if commit.returncode != 0:
            sys.exit(f"--baseline {ref}: not a revision of this repository")
        target = workdir / "baseline"
        target.mkdir()
        archive = subprocess.run(
            ["git", "archive", ref, "src/formrelay"], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
        return cls(f"{ref} ({commit.stdout.strip()})", target / "src")


# A browser posting a form from another site sends its Origin (fetch and a plain form's
# POST alike): every ingest run sends it, so flask-cors answers it in each.
BROWSER = {"Origin": "https://www.example.org"}
# The base figures: every optional check off (the in-memory limits stay, as installed),
# the search index too; the all-checks run turns them on.
PLAIN = {"FORMRELAY_SEARCH_INDEX": "off"}
# The all-checks run's Redis: the machine's, a database number of the benchmark's own.
CHECKS_REDIS = "redis://127.0.0.1:6379/14"
# Measured in turns, the six servers up at once, so that the machine's drift falls on
# all of them: TURNS turns of about a third of a run each (3 s; 1 s with --quick).
ROUNDS = ("parse", "committer", "plain", "guarded", "all_checks", "worker")
TURNS = 6
# Then the latency at half the peak, the same way: these two servers, in four turns each.
HALF_PEAK = ("worker", "committer")
HALF_PEAK_TURNS = 4


def all_checks_form(stack: Stack) -> str:
    """A form with every check the spam settings add; returns its key."""
    key = stack.cli("form", "create", "--name", "Checked", "--to", "owner@example.com")
    key = key.strip().splitlines()[-1].rsplit("/", 1)[1]
    stack.cli(
        "form",
        "update",
        key,
        "--allowed-domains",
        "example.org,*.example.org,*.example.net",
        # High enough that the load generator (one address) is never refused: every
        # request still counts in Redis, which is the cost measured.
        "--rate-limit",
        "100000000/minute;1000000000/day",
        "--max-links",
        "3",
        "--blocked-words",
        "casino,viagra,cheap pills,crypto giveaway,seo services",
        "--blocked-senders",
        "@spam.example,bad@example.com",
        "--blocked-addresses",
        "203.0.113.0/24,198.51.100.0/24,2001:db8::/32",
        "--min-seconds",
        "2",
        "--honeypot",
        "website",
    )
    return key


# Each server is loaded this long, unmeasured, before its run: what is measured is a server
# as it runs for days, not its first seconds (a formrelay server's first batch waits for
# the machine's committer it has just started; measured at 910 submissions/s over 10 s from
# a cold start and 1,919 after 5 s), and every app, the references too, gets the same.
WARM_UP_SECONDS = 3


def bench_ingest(
    db: Database,
    seconds: int,
    workdir: Path,
    report: dict[str, Any],
    baseline: Baseline | None = None,
) -> None:
    """Ingest against its reachable ceilings (issue 11), latency at half the peak, and
    isolation from slow mail; with a baseline, this version's request path beside it.

    On one database and form, each served by the Procfile's web line: the parse-only and
    the minimal durable committer references (bench/reference_*.py), formrelay without
    its worker, formrelay with the spam and abuse checks on (issue 8: a Redis-counted rate
    limit, allowed domains, content rules) and with every check on (those and the search
    index); and on a database of its own, formrelay with its worker draining beside it, as
    production runs. All six up at once, measured in TURNS short turns each while the
    others idle (the worker stopped through the others' turns); then the worker's stack at
    half its peak and the minimal committer at half its own, in turns the same way.
    The bare endpoint (bench/bare.py) is measured once, for reference only.
    """
    worker_db = db.another(workdir, "with-worker")
    try:
        ingest_runs(db, worker_db, seconds, workdir, report, baseline)
    finally:
        worker_db.drop()


def ingest_runs(
    db: Database,
    worker_db: Database,
    seconds: int,
    workdir: Path,
    report: dict[str, Any],
    baseline: Baseline | None,
) -> None:
    turn_seconds = max(1, seconds // 3)
    fast = MailSink()
    with fast.running():
        stack = Stack(workdir, db, fast, PLAIN)
        endpoint = stack.prepare()
        url = endpoint.replace(stack.env["FORMRELAY_BASE_URL"], f"http://127.0.0.1:{stack.port}")
        checked = Stack(workdir, db, fast, {"RATELIMIT_STORAGE_URI": CHECKS_REDIS})
        checked_key = all_checks_form(checked)
        # Issue 8's measure: the spam and abuse checks alone, the search index off as in
        # the plain run.
        guarded = Stack(workdir, db, fast, {**PLAIN, "RATELIMIT_STORAGE_URI": CHECKS_REDIS})
        # Its worker is stopped (SIGSTOP) through the other servers' turns, its beats with
        # it: a grace longer than those turns, or it would hand its own batch back on
        # waking. What it does while it runs is the same.
        worked = Stack(workdir, worker_db, fast, {**PLAIN, "FORMRELAY_WORKER_GRACE_SECONDS": "600"})
        worked_key = worked.prepare().rsplit("/", 1)[1]

        def submissions(database: Database = db) -> int:
            return count_rows(database, "SELECT count(*) FROM submissions")

        def warm_up(target: str) -> None:
            wrk(target, WARM_UP_SECONDS, 32, workdir, BROWSER)

        def measure(server: Stack, app: str = "formrelay.wsgi:app", **kw: Any) -> dict[str, Any]:
            """One server's closed-loop run on the plain form, after a warm-up."""
            server.start_web(app, **kw)
            try:
                warm_up(url)
                return wrk(url, seconds, 32, workdir, BROWSER)
            finally:
                server.stop()

        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in ROUNDS}
        # The six servers of the turns, each on its port: the references on the plain
        # settings, formrelay's plain run on `stack` itself, the checks on theirs, and
        # formrelay with its worker on a database of its own.
        apps = {
            "parse": (Stack(workdir, db, fast, PLAIN), "bench.reference_parse:app", None),
            "committer": (Stack(workdir, db, fast, PLAIN), "bench.reference_commit:app", None),
            "plain": (stack, "formrelay.wsgi:app", None),
            "guarded": (guarded, "formrelay.wsgi:app", checked_key),
            "all_checks": (checked, "formrelay.wsgi:app", checked_key),
            "worker": (worked, "formrelay.wsgi:app", worked_key),
        }
        # The submissions each counted server stored in its turns (the measured runs only).
        stored = {"committer": 0, "worker": 0}
        counted = {"committer": db, "worker": worker_db}
        path = url.rsplit("/", 1)[1]
        worker: subprocess.Popen[bytes] | None = None
        peak_rss = [0.0]
        stop_sampling = threading.Event()

        def sample(web: int) -> None:  # the worker's stack's web processes, loaded or not
            while not stop_sampling.wait(0.2):
                for pid in children(web):
                    with contextlib.suppress(FileNotFoundError):  # a process just gone
                        peak_rss[0] = max(peak_rss[0], rss_mb(pid))

        def running(name: str) -> None:
            """The worker drains in its own stack's turns only."""
            if worker is not None and worker.poll() is None:
                os.kill(worker.pid, signal.SIGCONT if name == "worker" else signal.SIGSTOP)

        try:
            bare = measure(stack, "bench.bare:app")
            urls: dict[str, str] = {}
            for name, (server, app, key) in apps.items():
                server.start_web(app)
                if name == "worker":
                    worker = worked.start_worker()
                urls[name] = f"http://127.0.0.1:{server.port}/f/{key or path}"
                warm_up(urls[name])
            sampler = threading.Thread(target=sample, args=(worked.procs[0].pid,), daemon=True)
            sampler.start()
            # Every server up (and warm) at once, all idle but the one measured: short
            # turns follow the machine's capacity, which moves within seconds here, far
            # more closely than one server's whole run after another's.
            for turn in range(TURNS):
                at = turn % len(ROUNDS)
                for name in ROUNDS[at:] + ROUNDS[:at]:  # another goes first each turn
                    running(name)
                    before = submissions(counted[name]) if name in counted else 0
                    messages = fast.count
                    result = wrk(urls[name], turn_seconds, 32, workdir, BROWSER)
                    if name == "worker":  # what it sent meanwhile
                        result["sent"] = fast.count - messages
                    if name in counted:
                        result["stored"] = submissions(counted[name]) - before
                        stored[name] += result["stored"]
                    rounds[name].append(result)
            for name, (server, _, _) in apps.items():
                if name not in ("committer", "worker"):
                    server.stop()

            # formrelay at half its peak, its worker draining beside it, and the minimal
            # committer at half its own peak: the yardstick of the p99 target, measured in
            # turns of their own as the peaks were.
            peak = {name: sum(r["rps"] for r in rounds[name]) / TURNS for name in HALF_PEAK}
            halves = paced_turns(
                {name: (urls[name], peak[name] / 2) for name in HALF_PEAK},
                HALF_PEAK_TURNS,
                turn_seconds,
                workdir,
                BROWSER,
                before=running,
            )
            half, committer_half = halves["worker"], halves["committer"]
            running("worker")
            apps["committer"][0].stop()
            half_hey = hey(urls["worker"], peak["worker"] / 2, seconds, workdir, BROWSER)
            stop_sampling.set()
            sampler.join()
            worked.stop()

            # This checkout and the baseline's code, both without a worker, one after the
            # other on the same database: what this version's request path costs or saves.
            versions: dict[str, float] = {}
            if baseline is not None:
                versions["baseline_rps"] = measure(stack, source=baseline.source)["rps"]
                versions["this_rps"] = measure(stack)["rps"]
        finally:
            running("worker")  # a stopped process takes no SIGTERM
            stop_sampling.set()
            stack.stop()
            for server, _, _ in apps.values():
                server.stop()
    rps = {name: sum(r["rps"] for r in runs) / len(runs) for name, runs in rounds.items()}
    worked_rounds = rounds["worker"]
    committer = rounds["committer"]
    report["ingest"][db.name] = {
        "bare_rps": bare["rps"],
        "parse_rps": rps["parse"],
        "committer_rps": rps["committer"],
        "plain_rps": rps["plain"],
        "all_checks_rps": rps["all_checks"],
        "guarded_rps": rps["guarded"],
        "worker_rps": rps["worker"],
        # Messages the worker sent during its turns, a second: how much it drained while
        # yielding the CPU to the web processes (its nice).
        "worker_sent_per_s": sum(r["sent"] for r in worked_rounds) / (TURNS * turn_seconds),
        "vs_committer": rps["plain"] / rps["committer"],
        "vs_parse": rps["plain"] / rps["parse"],
        "worker_vs_committer": rps["worker"] / rps["committer"],
        "all_checks_vs_plain": rps["all_checks"] / rps["plain"],
        "guarded_vs_plain": rps["guarded"] / rps["plain"],
        "ratio": rps["worker"] / bare["rps"],  # against the bare endpoint: reported only
        "rounds": rounds,
        "half_peak": half,
        "half_peak_hey": half_hey,
        "committer_half_peak": committer_half,
        "p99_vs_committer": half["p99_ms"] / committer_half["p99_ms"],
        "acknowledged": sum(r["requests"] - r["non_2xx"] for r in worked_rounds),
        "stored": stored["worker"],
        "non_2xx": sum(r["non_2xx"] for r in worked_rounds),
        "peak_web_worker_rss_mb": peak_rss[0],
        # The yardsticks count only if they answered every request, after storing it.
        "references_non_2xx": sum(
            r["non_2xx"] for name in ("parse", "committer") for r in rounds[name]
        ),
        "committer_acknowledged": sum(r["requests"] - r["non_2xx"] for r in committer),
        "committer_stored": stored["committer"],
        "all_checks_non_2xx": sum(
            r["non_2xx"] for name in ("guarded", "all_checks") for r in rounds[name]
        ),
        # Submissions the all-checks form's rules took for spam: none should be (spam gets
        # no deliveries, so it would cost less).
        "all_checks_spam": count_rows(db, "SELECT count(*) FROM submissions WHERE is_spam"),
    }
    if baseline is not None:
        report["ingest"][db.name]["versus_baseline"] = {
            "baseline": baseline.ref,
            **versions,
            "ratio": versions["this_rps"] / versions["baseline_rps"],
        }

    # Item 2: the same offered load with a mail server that takes 2 s per message, on the
    # worker run's database, as the fast-mail run was.
    slow = MailSink(delay=2.0)
    with slow.running():
        stack = Stack(workdir, worker_db, slow, PLAIN)
        try:
            stack.start_web()
            stack.start_worker()
            slow_url = f"http://127.0.0.1:{stack.port}/f/{worked_key}"
            # Warmed up as the fast-mail run's server was in its turns: a server that has
            # just started is also starting its committer.
            wrk(slow_url, WARM_UP_SECONDS, 32, workdir, BROWSER)
            slow_run = paced(
                slow_url, report["ingest"][db.name]["worker_rps"] / 2, seconds, workdir, BROWSER
            )
        finally:
            stack.stop()
    report["isolation"][db.name] = {
        "fast_mail_p99_ms": half["p99_ms"],
        "slow_mail_p99_ms": slow_run["p99_ms"],
        "ratio": slow_run["p99_ms"] / half["p99_ms"],
        "slow_mail_messages_received": slow.count,
    }


def enqueue(db: Database, workdir: Path, n: int, mail: MailSink) -> Stack:
    """A form and `n` pending deliveries, stored through the domain function in bulk."""
    stack = Stack(workdir, db, mail)
    key = stack.prepare().rsplit("/", 1)[1]
    code = f"""
from formrelay import create_app
from formrelay.extensions import db
from formrelay.services.outbox import store_submissions
from formrelay.services.outbox_sql import DriverWriter
from formrelay.services.submissions import SubmissionMeta, prepare_submission
app = create_app()
with app.app_context():
    item = prepare_submission([("name", "Ann"), ("email", "ann@example.org"),
                               ("message", "Hello there")], SubmissionMeta())
    for start in range(0, {n}, 500):
        # group commit's statements, in the session's transaction
        connection = db.session.connection().connection.dbapi_connection
        writer = DriverWriter(connection, db.engine.dialect.name)
        store_submissions(writer, [("{key}", item)] * min(500, {n} - start))
        db.session.commit()
"""
    subprocess.run([sys.executable, "-c", code], env=stack.env, cwd=workdir, check=True)
    return stack


def delivery_rate(db: Database) -> tuple[int, float]:
    """(sent, messages per second between the first and the last send)."""
    from sqlalchemy import create_engine, text

    from formrelay.settings import normalize_database_url

    engine = create_engine(normalize_database_url(db.url, Path(".")))
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*), min(sent_at), max(sent_at) FROM deliveries WHERE status='sent'")
        ).one()
    engine.dispose()
    sent, first, last = rows
    if sent < 2:
        return sent, 0.0
    if isinstance(first, str):
        first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return sent, (sent - 1) / max((last - first).total_seconds(), 1e-6)


def run_worker_until(stack: Stack, db: Database, n: int, timeout: float) -> None:
    proc = stack.start_worker()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count_rows(db, "SELECT count(*) FROM deliveries WHERE status='sent'") >= n:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)


# formrelay's worker and the minimal sender take turns in this order, so that the machine
# speeding up or slowing down through the section falls on both alike.
DELIVERY_TURNS = ("worker", "reference", "reference", "worker")


def bench_smtp(workdir: Path, n: int, mail: MailSink) -> dict[str, Any]:
    """One worker process to SMTP beside the minimal sender (bench/reference_send.py).

    The worker's two turns send n/2 deliveries each, from databases filled beforehand; the
    reference's send the exact messages the sink received in the worker's first turn.
    """
    import reference_send

    half = n // 2
    stacks = []
    for turn in range(2):
        (workdir / f"smtp-{turn}").mkdir()
        db = Database.sqlite(workdir / f"smtp-{turn}")
        stacks.append((enqueue(db, workdir / f"smtp-{turn}", half, mail), db))
    messages = workdir / "messages.json"
    runs: dict[str, list[dict[str, Any]]] = {"worker": [], "reference": []}
    for name in DELIVERY_TURNS:
        before = mail.count
        if name == "worker":
            stack, db = stacks[len(runs["worker"])]
            mail.kept = [] if not messages.exists() else None
            run_worker_until(stack, db, half, timeout=120)
            sent, rate = delivery_rate(db)
            result: dict[str, Any] = {"messages": sent, "rate_per_s": rate}
            if mail.kept is not None:
                reference_send.dump(mail.kept, messages)
                mail.kept = None
        else:
            command = ["-m", "bench.reference_send", str(messages), "127.0.0.1", str(mail.port)]
            out = subprocess.run(  # started as the worker is: its settings, its own session
                [sys.executable, *command],
                env=stacks[0][0].env,
                start_new_session=True,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.splitlines()[-1])
        result["received"] = mail.count - before
        runs[name].append(result)
    worker = sum(r["rate_per_s"] for r in runs["worker"]) / len(runs["worker"])
    reference = sum(r["rate_per_s"] for r in runs["reference"]) / len(runs["reference"])
    return {
        "smtp": {
            "messages": sum(r["messages"] for r in runs["worker"]),
            "received": sum(r["received"] for r in runs["worker"]),
            "rate_per_s": worker,
            "turns": runs["worker"],
        },
        "smtp_reference": {
            "messages": sum(r["messages"] for r in runs["reference"]),
            "received": sum(r["received"] for r in runs["reference"]),
            "rate_per_s": reference,
            "turns": runs["reference"],
        },
        "smtp_vs_reference": worker / reference if reference else 0.0,
    }


def bench_delivery(workdir: Path, n: int, report: dict[str, Any]) -> None:
    """Item 3: one worker process to SMTP (fast) beside the minimal sender, to SES in moto,
    and with a send rate."""
    out: dict[str, Any] = {}
    with MailSink().running() as mail:
        out.update(bench_smtp(workdir, n, mail))

        rate_limit = 100.0
        db = Database.sqlite(workdir / "limited")
        (workdir / "limited").mkdir()
        stack = enqueue(db, workdir / "limited", 600, mail)
        stack.env["FORMRELAY_SEND_RATE"] = str(rate_limit)
        run_worker_until(stack, db, 600, timeout=60)
        sent, rate = delivery_rate(db)
        out["rate_limited"] = {
            "configured_per_s": rate_limit,
            "rate_per_s": rate,
            "error": abs(rate - rate_limit) / rate_limit,
        }

    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client(
            "sesv2",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_email_identity(EmailIdentity="formrelay@example.com")
        db = Database.sqlite(workdir / "ses")
        (workdir / "ses").mkdir()
        stack = enqueue(db, workdir / "ses", min(n, 1000), MailSink())
        stack.env.update(
            MAIL_BACKEND="ses",
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
        )
        run_worker_until(stack, db, min(n, 1000), timeout=120)
        sent, rate = delivery_rate(db)
        out["ses_moto"] = {"messages": sent, "rate_per_s": rate}
    finally:
        moto.stop()
    report["delivery"] = out


# Production servers considered for the Procfile's web line, with the same worker count.
SERVERS = {
    "gunicorn sync": "gunicorn --bind 127.0.0.1:$PORT --workers 2 formrelay.wsgi:app",
    "gunicorn gthread x16": (
        "gunicorn --bind 127.0.0.1:$PORT --workers 2 -k gthread --threads 16 formrelay.wsgi:app"
    ),
    "granian": (
        "granian --interface wsgi --host 127.0.0.1 --port $PORT --workers 2 formrelay.wsgi:app"
    ),
}


def bench_servers(workdir: Path, seconds: int, report: dict[str, Any]) -> None:
    """The server choice, by measurement: formrelay and the bare ceiling under each, SQLite."""
    out: dict[str, Any] = {}
    with MailSink().running() as mail:
        for name, command in SERVERS.items():
            sub = workdir / name.replace(" ", "-")
            sub.mkdir()
            db = Database.sqlite(sub)
            stack = Stack(sub, db, mail)
            endpoint = stack.prepare()
            try:
                stack.start_web("bench.bare:app", command)
                ceiling = wrk(endpoint, seconds, 32, sub)["rps"]
                stack.stop()
                stack.start_web(command=command)
                wrk(endpoint, 2, 32, sub)  # warm up
                formrelay = wrk(endpoint, seconds, 32, sub)["rps"]
            finally:
                stack.stop()
            out[name] = {
                "ceiling_rps": ceiling,
                "formrelay_rps": formrelay,
                "ratio": formrelay / ceiling,
            }
    report["servers"] = out


def bench_memory(workdir: Path, report: dict[str, Any]) -> None:
    """Item 4: RSS of an idle web worker and an idle worker process."""
    db = Database.sqlite(workdir)
    with MailSink().running() as mail:
        stack = Stack(workdir, db, mail)
        stack.prepare()
        try:
            web = stack.start_web()
            worker = stack.start_worker()
            time.sleep(3)
            web_workers = [rss_mb(pid) for pid in children(web.pid)]
            report["memory"] = {
                "idle_web_worker_rss_mb": max(web_workers) if web_workers else rss_mb(web.pid),
                "idle_web_master_rss_mb": rss_mb(web.pid),
                "idle_worker_rss_mb": rss_mb(worker.pid),
            }
        finally:
            stack.stop()


# -- targets and report --------------------------------------------------------------------
def targets(report: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    out: list[tuple[str, float, str, bool]] = []
    for name, r in report.get("ingest", {}).items():
        for run in ("bare", "parse", "committer", "plain", "guarded", "all_checks", "worker"):
            out.append((f"ingest_{name}_{run}_rps", r[f"{run}_rps"], "report", True))
        out.append((f"ingest_{name}_ratio", r["ratio"], "report", True))  # worker vs bare
        # Without the worker, as the references run; then with it, as production runs.
        # Against the parse-only app it is reported only: the minimal committer itself
        # reaches less than the 0.45 once asked (docs/performance.md#the-targets-re-set).
        versus = r["vs_committer"]
        out.append((f"ingest_{name}_vs_committer", versus, ">=0.9", versus >= 0.9))
        out.append((f"ingest_{name}_vs_parse", r["vs_parse"], "report", True))
        versus = r["worker_vs_committer"]
        out.append((f"ingest_{name}_worker_vs_committer", versus, ">=0.65", versus >= 0.65))
        if "worker_sent_per_s" in r:
            out.append((f"ingest_{name}_worker_sent_per_s", r["worker_sent_per_s"], "report", True))
        # The half-peak p99 against the minimal committer's own at half its own peak, both
        # measured in the same turns; the two figures themselves are reported.
        p99, committer_p99 = r["half_peak"]["p99_ms"], r["committer_half_peak"]["p99_ms"]
        out.append((f"ingest_{name}_p99_ms_at_half_peak", p99, "report", True))
        out.append((f"ingest_{name}_committer_p99_ms_at_half_peak", committer_p99, "report", True))
        versus = p99 / committer_p99 if committer_p99 > 0 else float("inf")
        out.append((f"ingest_{name}_p99_vs_committer", versus, "<=1.5", versus <= 1.5))
        hey_p99 = r["half_peak_hey"]["p99_ms"]
        out.append((f"ingest_{name}_p99_ms_at_half_peak_hey_bursts", hey_p99, "report", True))
        # Every check on, within 15% of the plain run (both without the worker), and every
        # post accepted.
        checks = r["all_checks_vs_plain"]
        out.append((f"ingest_{name}_all_checks_vs_plain", checks, ">=0.85", checks >= 0.85))
        # Issue 8: the spam and abuse checks alone (allowed domains, a Redis-counted limit,
        # the content rules), within 15% of the plain form, and every post accepted.
        guarded = r["guarded_vs_plain"]
        out.append((f"spam_{name}_guarded_vs_plain", guarded, ">=0.85", guarded >= 0.85))
        refused = r["all_checks_non_2xx"]
        out.append((f"spam_{name}_guarded_refused", refused, "<=0", refused <= 0))
        if "versus_baseline" in r:
            versus = r["versus_baseline"]["ratio"]
            out.append((f"ingest_{name}_no_worker_vs_baseline", versus, "report", True))
        lost = r["acknowledged"] - r["stored"]
        out.append((f"ingest_{name}_acknowledged_not_stored", lost, "<=0", lost <= 0))
        # The yardsticks': a reference that failed requests, or acknowledged what it did
        # not store, measures nothing.
        bad = r["references_non_2xx"]
        out.append((f"ingest_{name}_references_non_2xx", bad, "<=0", bad <= 0))
        lost = r["committer_acknowledged"] - r["committer_stored"]
        out.append((f"ingest_{name}_committer_acknowledged_not_stored", lost, "<=0", lost <= 0))
    for name, r in report.get("isolation", {}).items():
        out.append((f"isolation_{name}_p99_ratio", r["ratio"], "<=1.2", r["ratio"] <= 1.2))
    d = report.get("delivery", {})
    if "smtp" in d:
        # The absolute rate measures the machine as much as formrelay: it is reported, and
        # the target is against the minimal sender on the same messages and sink.
        out.append(("delivery_smtp_per_s", d["smtp"]["rate_per_s"], "report", True))
    if "smtp_reference" in d:
        rate = d["smtp_reference"]["rate_per_s"]
        out.append(("delivery_smtp_reference_per_s", rate, "report", True))
        versus = d["smtp_vs_reference"]
        out.append(("delivery_smtp_vs_reference", versus, ">=0.5", versus >= 0.5))
    if "rate_limited" in d:
        err = d["rate_limited"]["error"]
        out.append(("delivery_send_rate_error", err, "<=0.05", err <= 0.05))
    if "ses_moto" in d:
        out.append(("delivery_ses_moto_per_s", d["ses_moto"]["rate_per_s"], "report", True))
    for name, r in report.get("servers", {}).items():
        out.append((f"server_ratio_{name.replace(' ', '_')}", r["ratio"], "report", True))
    m = report.get("memory", {})
    for key in ("idle_web_worker_rss_mb", "idle_worker_rss_mb"):
        if key in m:
            out.append((f"memory_{key}", m[key], "<80", m[key] < 80))
    for name, r in report.get("ingest", {}).items():
        out.append(
            (f"memory_peak_web_worker_rss_mb_{name}", r["peak_web_worker_rss_mb"], "report", True)
        )
    if "uploads" in report:
        import uploads

        out += uploads.targets(report)
    if "dashboard" in report:
        import dashboard

        out += dashboard.targets(report)
    return out


def write_report(report: dict[str, Any], rows: list[tuple[str, float, str, bool]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    report["targets"] = [
        {"name": n, "measured": round(v, 4), "goal": g, "pass": ok} for n, v, g, ok in rows
    ]
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    lines = [
        f"# formrelay benchmarks, {report['when']}",
        "",
        f"Machine: {report['machine']}. Server: `{report['server']}`.",
        "",
        "| target | measured | goal | result |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {v:.3f} | {g} | {'-' if g == 'report' else 'PASS' if ok else 'MISS'} |"
        for n, v, g, ok in rows
    ]
    lines += [
        "",
        "```json",
        json.dumps({k: v for k, v in report.items() if k != "targets"}, indent=2, default=str),
        "```",
        "",
    ]
    (RESULTS / "latest.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, for trying the harness")
    parser.add_argument("--only", default="servers,ingest,delivery,memory,uploads,dashboard")
    parser.add_argument(
        "--ingest-db", default="sqlite,postgresql", help="the ingest section's databases"
    )
    parser.add_argument(
        "--dashboard-rows",
        type=int,
        default=1_000_000,
        help="submissions the dashboard section seeds (its SQLite database is cached)",
    )
    parser.add_argument(
        "--dashboard-db", default="sqlite,postgresql", help="the dashboard section's databases"
    )
    parser.add_argument(
        "--baseline",
        default=(ROOT / "bench" / "BASELINE").read_text().split()[0],
        help="a git revision whose request path is measured beside this one's "
        "(default: the one bench/BASELINE names; 'none' to skip)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "hey"):
        if tool == "hey" and "ingest" not in args.only.split(","):
            continue  # only the paced runs (ingest) use hey
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/ensure-bench-deps (make bench does)")
    seconds = 4 if args.quick else 10
    parts = set(args.only.split(","))
    known = {"servers", "ingest", "delivery", "memory", "uploads", "dashboard"}
    if parts - known:  # "spam" among them: its rounds are ingest's all-checks run now
        unknown, names = ", ".join(sorted(parts - known)), ", ".join(sorted(known))
        sys.exit(f"--only: unknown part(s) {unknown}; known: {names}")
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores {platform.python_version()}",
        "server": procfile_web(),
        "ingest": {},
        "isolation": {},
    }
    with tempfile.TemporaryDirectory(prefix="formrelay-bench-") as tmp:
        workdir = Path(tmp)
        if "ingest" in parts:
            baseline = None
            if args.baseline != "none":
                baseline = Baseline.export(args.baseline, workdir)
                report["baseline"] = baseline.ref
            (workdir / "sqlite").mkdir()
            wanted = args.ingest_db.split(",")
            candidates = [
                Database.sqlite(workdir / "sqlite") if "sqlite" in wanted else None,
                Database.postgresql() if "postgresql" in wanted else None,
            ]
            for db in candidates:
                if db is None:
                    continue
                try:
                    sub = workdir / f"run-{db.name}"
                    sub.mkdir()
                    bench_ingest(db, seconds, sub, report, baseline)
                finally:
                    db.drop()
        if "servers" in parts:
            (workdir / "servers").mkdir()
            bench_servers(workdir / "servers", seconds, report)
        if "delivery" in parts:
            (workdir / "delivery").mkdir()
            bench_delivery(workdir / "delivery", 1000 if args.quick else 3000, report)
        if "memory" in parts:
            (workdir / "memory").mkdir()
            bench_memory(workdir / "memory", report)
        if "uploads" in parts:
            import uploads

            (workdir / "uploads").mkdir()
            uploads.run(report, workdir / "uploads")
        if "dashboard" in parts:
            import dashboard

            dashboard.run(
                report,
                workdir,
                databases=args.dashboard_db.split(","),
                rows=args.dashboard_rows,
                seconds=seconds,
                requests=15 if args.quick else 40,
                turns=1 if args.quick else 2,
            )
    rows = targets(report)
    write_report(report, rows)
    print(f"results: {RESULTS / 'latest.md'}")
    if "dashboard" in report:
        import dashboard

        for line in dashboard.notes(report):
            print(f"NOTE {line}")
    for name, value, goal, _ in rows:  # figures without a goal first, then the targets
        if goal == "report":
            print(f"INFO {name} {value:.3f}")
    for name, value, goal, ok in rows:
        if goal != "report":
            print(f"TARGET {name} {value:.3f} {goal} {'PASS' if ok else 'MISS'}")


if __name__ == "__main__":
    main()
