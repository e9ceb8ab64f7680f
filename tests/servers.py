"""Tools for tests that run servers, workers and threads beside them: a free port to listen on,
waiting until what they do shows, and the Procfile's commands."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Variables that would leak a developer's own configuration into the tests.
SETTING_PREFIXES = ("FORMRELAY_", "MAIL_", "AWS_", "SES_")
SETTING_NAMES = ("DATABASE_URL", "SECRET_KEY", "PORT", "WEB_CONCURRENCY")


def is_setting(name: str) -> bool:
    """Whether the environment variable `name` configures formrelay or its mail."""
    return name.startswith(SETTING_PREFIXES) or name in SETTING_NAMES


def without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` less every variable that configures formrelay (for a process of the test's)."""
    return {name: value for name, value in environ.items() if not is_setting(name)}


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
