"""The real commands, as a newcomer and a production host run them."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from formrelay.cli.forms import snippet

from .servers import ROOT, free_port, procfile, wait_until, without_settings

BIN = Path(sys.executable).parent


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: nothing of the developer's own formrelay settings leaks in."""
    return {
        **without_settings(os.environ),
        "FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def wait_for(url: str, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    """Wait until the server at `url` answers; raises AssertionError if it exits first."""

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited early: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            httpx.get(url, timeout=1)
        except httpx.TransportError:
            return False
        return True

    wait_until(answers, timeout, lambda: f"{url} did not answer", interval=0.1)


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """A long-running command in its own process group (stopped as a whole by stop())."""
    return subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM to the process group (a server's workers too), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    # A worker that outlived its main process would keep the port: take the group down.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return out


@pytest.mark.slow
def test_make_run_flow_serves_the_demo_form_and_prints_its_mail(tmp_path):
    """`make run`: db upgrade, form demo, serve; a post to the demo form is printed."""
    port = free_port()
    env = env_for(tmp_path, FORMRELAY_BASE_URL=f"http://127.0.0.1:{port}")
    formrelay = str(BIN / "formrelay")
    assert run([formrelay, "db", "upgrade"], env, tmp_path).returncode == 0
    demo = run([formrelay, "form", "demo"], env, tmp_path)
    assert demo.returncode == 0, demo.stderr
    url = re.search(r"http://127\.0\.0\.1:\d+/f/[\w-]+", demo.stdout).group(0)
    assert f'<form action="{url}" method="POST">' in demo.stdout

    proc = start([formrelay, "serve", "--port", str(port)], env, tmp_path)
    try:
        wait_for(f"http://127.0.0.1:{port}/", proc)
        r = httpx.post(url, data={"email": "ann@example.org", "message": "Hello from the demo"})
        assert r.status_code == 303
        assert urlsplit(r.headers["location"]).path == "/thanks"
        time.sleep(1.5)  # the in-process worker is woken at once; give it a moment
    finally:
        out = stop(proc)
    assert "To: you@example.com" in out
    assert "Reply-To: ann@example.org" in out
    assert "Hello from the demo" in out
    assert "delivery 1: sent" in out


@pytest.mark.slow
def test_procfile_web_and_release_run_in_production_mode(tmp_path):
    port = free_port()
    env = env_for(
        tmp_path,
        FORMRELAY_ENV="production",
        SECRET_KEY="s3cret-for-the-test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        FORMRELAY_BASE_URL="https://forms.example.com",
        PORT=str(port),
        WEB_CONCURRENCY="2",
    )
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    release = run(procfile("release"), env, tmp_path)
    assert release.returncode == 0, release.stderr
    created = run(
        [str(BIN / "formrelay"), "form", "create", "--name", "Prod", "--to", "o@example.com"],
        env,
        tmp_path,
    )
    endpoint = created.stdout.strip().splitlines()[-1]
    assert endpoint.startswith("https://forms.example.com/f/")

    proc = start(procfile("web"), env, tmp_path)
    try:
        wait_for(f"http://127.0.0.1:{port}/", proc)
        local = endpoint.replace("https://forms.example.com", f"http://127.0.0.1:{port}")
        r = httpx.post(local, json={"message": "hi"}, headers={"Accept": "application/json"})
        assert r.status_code == 200
        assert r.json()["ok"] is True
        assert r.json()["next"].startswith("https://forms.example.com/thanks")
    finally:
        stop(proc)


def test_production_without_secret_key_stops_with_one_line(tmp_path):
    env = env_for(tmp_path, FORMRELAY_ENV="production")
    result = run([str(BIN / "formrelay"), "form", "list"], env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "formrelay: configuration error: SECRET_KEY is required when FORMRELAY_ENV=production"
    )


# -- what the README promises a newcomer ---------------------------------------------------
KEY = r"[\w-]{16}"


def normalise_keys(text: str) -> str:
    """`text` with every form key (in an endpoint URL or after "key ") replaced by KEY, and
    every sign-in link's token by TOKEN."""
    text = re.sub(r"(?<=/sign-in/)\S+", "TOKEN", text)  # a sign-in link's token too
    return re.sub(rf"(?<=/f/){KEY}|(?<=\(key ){KEY}", "KEY", text)


def quick_start() -> list[tuple[str, str]]:
    """The code blocks of the README's Quick start, as (language, text)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def test_the_readmes_quick_start_prints_what_the_readme_shows(tmp_path):
    """`make run`'s first two commands, then the README's own, in a fresh instance folder."""
    env = env_for(tmp_path)
    env.pop("PORT", None)
    formrelay = str(BIN / "formrelay")
    (_, make_run), (_, console), (_, html) = quick_start()
    assert run([formrelay, "db", "upgrade"], env, tmp_path).returncode == 0
    demo = run([formrelay, "form", "demo"], env, tmp_path)
    assert demo.returncode == 0, demo.stderr
    # Then `serve`, on a free port (read as 5000, make run's), until its first-start link.
    port = free_port()
    proc = start([formrelay, "serve", "--port", str(port)], env, tmp_path)
    try:
        wait_for(f"http://127.0.0.1:{port}/", proc)
    finally:
        served = stop(proc).replace(f"127.0.0.1:{port}", "127.0.0.1:5000")

    # `make run` "prints something like" these lines, in this order ("..." stands for others).
    printed = iter(normalise_keys(demo.stdout + served).splitlines())
    for line in normalise_keys(make_run).splitlines():
        if line != "...":
            assert line in printed, f"`make run` did not print {line!r}"

    command, *shown = console.splitlines()
    assert command.startswith("$ formrelay ")
    created = run([formrelay, *shlex.split(command)[2:]], env, tmp_path)
    assert (created.returncode, created.stderr) == (0, "")
    assert (
        normalise_keys(created.stdout).splitlines() == normalise_keys("\n".join(shown)).splitlines()
    )
    endpoint = created.stdout.splitlines()[-1]
    assert normalise_keys(html) == normalise_keys(snippet(endpoint))


@pytest.mark.slow
def test_serve_on_another_port_gives_out_its_own_address(tmp_path):
    """Without FORMRELAY_BASE_URL the printed URL, redirects and endpoint pages follow the
    port, and with PORT set so do the URLs `form demo` prints."""
    port = free_port()
    env = env_for(tmp_path)
    env.pop("PORT", None)
    formrelay = str(BIN / "formrelay")
    assert run([formrelay, "db", "upgrade"], env, tmp_path).returncode == 0
    demo = run([formrelay, "form", "demo"], {**env, "PORT": str(port)}, tmp_path)
    endpoint = demo.stdout.splitlines()[1].removeprefix("Demo form: ")
    assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/f/{KEY}", endpoint), demo.stdout

    proc = start([formrelay, "serve", "--port", str(port)], env, tmp_path)
    try:
        wait_for(f"http://127.0.0.1:{port}/", proc)
        posted = httpx.post(endpoint, data={"message": "hi"})
        page = httpx.get(endpoint)
    finally:
        out = stop(proc)
    assert out.splitlines()[0] == (
        f"formrelay is serving http://127.0.0.1:{port}, with a worker in-process"
    )
    assert (posted.status_code, posted.headers["location"]) == (
        303,
        f"http://127.0.0.1:{port}/thanks",
    )
    assert (page.status_code, f'&lt;form action="{endpoint}" method="POST"&gt;' in page.text) == (
        405,
        True,
    )


@pytest.mark.slow
def test_a_fresh_serve_admits_exactly_its_limit_from_its_first_post(tmp_path):
    """The first posts arrive while the machine's committer starts: wherever a post is
    counted, a limit of 10 a minute admits 10 of 12 quick posts, never 11."""
    formrelay = str(BIN / "formrelay")
    for turn in range(2):  # twice: each start with a committer of its own to wait for
        port = free_port()
        env = env_for(tmp_path / str(turn), FORMRELAY_BASE_URL=f"http://127.0.0.1:{port}")
        assert run([formrelay, "db", "upgrade"], env, tmp_path).returncode == 0
        demo = run([formrelay, "form", "demo"], env, tmp_path)
        url = re.search(r"http://127\.0\.0\.1:\d+/f/[\w-]+", demo.stdout).group(0)
        proc = start([formrelay, "serve", "--port", str(port)], env, tmp_path)
        try:
            wait_for(f"http://127.0.0.1:{port}/formrelay.js", proc)
            with httpx.Client(headers={"Accept": "application/json"}, timeout=30) as client:
                statuses = [
                    client.post(url, data={"message": f"{n}"}).status_code for n in range(12)
                ]
        finally:
            out = stop(proc)
        assert statuses == [200] * 10 + [429] * 2, out
