"""Tools for tests that run servers, workers and threads beside them: a free port to listen on,
waiting until what they do shows, and the Procfile's commands."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (aiosmtpd cannot take 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nothing_to_add() -> str:
    return ""


def wait_until(
    condition: Callable[[], object],
    timeout: float = 5.0,
    describe: Callable[[], str] = _nothing_to_add,
    *,
    interval: float = 0.01,
) -> float:
    """Poll `condition` until it is true; returns the seconds that took.

    Raises AssertionError after `timeout` seconds, with what `describe()` says (a process's
    output, the rows so far); an exception from `condition` propagates at once.
    """
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            said = describe()
            raise AssertionError(f"still waiting after {timeout} s" + (f"; {said}" if said else ""))
        time.sleep(interval)
    return time.monotonic() - start


def procfile(kind: str) -> list[str]:
    """The Procfile's command for `kind`, run through a shell as Heroku and Dokku do."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    command = next(line for line in lines if line.startswith(f"{kind}:")).split(":", 1)[1]
    return ["/bin/sh", "-c", f"exec {command.strip()}"]
