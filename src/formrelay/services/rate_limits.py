"""The public endpoint's rate limits: a submission counted in all its windows at once.

Limits are written in Flask-Limiter's notation ("10/minute;200/day") and counted in fixed
windows, as Flask-Limiter counts them: `limits`, its engine, parses them and names their
keys. Flask-Limiter asks its storage once per window, though, and a submission under the
default limits counts in four (the form's two, the address's two over all forms): four
Redis round trips, a quarter of the ingest rate (bench/run.py's spam section). Here one
call of SharedCounters.incr_many counts them all, and `check_many` counts a whole batch of
submissions in that one call: group commit counts each batch just before storing it
(formrelay.ingest). The dashboard's log-in, reset and mail limits, off the hot path, keep
Flask-Limiter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse_many

from .counters import SharedCounters
from .errors import SubmissionRejected

MESSAGE = "Too many submissions from your address: wait a little, then send again."


class RateLimited(SubmissionRejected):
    """A window of the limits is full; `retry_after` seconds until every full one resets."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("RATE_LIMITED", MESSAGE)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[RateLimited], tuple[int]]:
        # Rebuilt from its own argument, not SubmissionRejected's: the machine's committer
        # sends it to the web process (formrelay.committer).
        return (RateLimited, (self.retry_after,))


@dataclass(frozen=True)
class Counted:
    """One submission's windows, to count it by: (key, window in seconds, amount allowed)."""

    windows: tuple[tuple[str, int, int], ...]


@lru_cache(maxsize=4096)
def windows(text: str) -> tuple[RateLimitItem, ...]:
    """The windows of a limit such as "10/minute;200/day" (validated when it was set)."""
    return tuple(parse_many(text))


def counted(client: str, limits: Sequence[tuple[str, str]]) -> Counted:
    """What a submission from `client` counts in: every window of `limits`, (scope, limit)
    pairs such as ("form:KEY", "10/minute;200/day")."""
    return Counted(
        tuple(
            (item.key_for("public", scope, client), item.get_expiry(), item.amount)
            for scope, text in limits
            for item in windows(text)
        )
    )


def count(counters: SharedCounters, client: str, limits: Sequence[tuple[str, str]]) -> None:
    """Count one submission from `client` in each window of `limits` (see `counted`).
    Raises RateLimited when any window is past its amount, this submission included; a
    refused submission counts too, as in Flask-Limiter's fixed windows."""
    [limited] = check_many(counters, [counted(client, limits)])
    if limited is not None:
        raise limited


def check_many(
    counters: SharedCounters, submissions: Sequence[Counted], *, alone: bool = False
) -> list[RateLimited | None]:
    """Count each submission in each of its windows, all in one call to the counters (in
    order: two from one address in one batch count as two); for each, RateLimited when a
    window is past its amount, else None. `alone`: see SharedCounters.incr_many."""
    values = counters.incr_many(
        [(key, window) for s in submissions for key, window, _ in s.windows], alone=alone
    )
    verdicts: list[RateLimited | None] = []
    at = 0
    for s in submissions:
        full = [
            (key, window)
            for (key, window, allowed), value in zip(
                s.windows, values[at : at + len(s.windows)], strict=True
            )
            if value > allowed
        ]
        at += len(s.windows)
        verdicts.append(
            RateLimited(max(_retry_after(counters, k, w) for k, w in full)) if full else None
        )
    return verdicts


def _retry_after(counters: SharedCounters, key: str, window: int) -> int:
    # Never longer than the window (the storage's expiry rounds up to a second), never 0;
    # the whole window when the storage cannot say (it went away meanwhile).
    left = math.ceil(counters.expires_at(key) - time.time())
    return max(1, min(window, left)) if left > 0 else window
