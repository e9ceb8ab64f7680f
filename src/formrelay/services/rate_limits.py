"""The public endpoint's rate limits: a submission counted in all its windows at once.

Limits are written in Flask-Limiter's notation ("10/minute;200/day") and counted in fixed
windows, as Flask-Limiter counts them: `limits`, its engine, parses them and names their
keys. Flask-Limiter asks its storage once per window, though, and a submission under the
default limits counts in four (the form's two, the address's two over all forms): four
Redis round trips, a quarter of the ingest rate (bench/run.py's spam section). Here one
call of SharedCounters.incr_many counts them all. The dashboard's log-in, reset and mail
limits, off the hot path, keep Flask-Limiter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from functools import lru_cache

from limits import RateLimitItem, parse_many

from .counters import PendingCounts, SharedCounters
from .errors import SubmissionRejected

MESSAGE = "Too many submissions from your address: wait a little, then send again."


class RateLimited(SubmissionRejected):
    """A window of the limits is full; `retry_after` seconds until every full one resets."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("RATE_LIMITED", MESSAGE)
        self.retry_after = retry_after


@lru_cache(maxsize=4096)
def windows(text: str) -> tuple[RateLimitItem, ...]:
    """The windows of a limit such as "10/minute;200/day" (validated when it was set)."""
    return tuple(parse_many(text))


def count(counters: SharedCounters, client: str, limits: Sequence[tuple[str, str]]) -> None:
    """Count one submission from `client` in every window of `limits`, (scope, limit)
    pairs such as ("form:KEY", "10/minute;200/day"). Raises RateLimited when any window
    is past its amount, this submission included; a refused submission counts too, as
    in Flask-Limiter's fixed windows."""
    start(counters, client, limits).check()


def start(counters: SharedCounters, client: str, limits: Sequence[tuple[str, str]]) -> Counting:
    """`count`, started: its `check()` raises RateLimited; meanwhile the caller may read
    the body (a Redis round trip then costs the submission no time)."""
    counted = [
        (item, item.key_for("public", scope, client))
        for scope, text in limits
        for item in windows(text)
    ]
    return Counting(
        counters, counted, counters.start_many([(k, i.get_expiry()) for i, k in counted])
    )


class Counting:
    def __init__(
        self,
        counters: SharedCounters,
        counted: list[tuple[RateLimitItem, str]],
        pending: PendingCounts,
    ) -> None:
        self._counters, self._counted, self._pending = counters, counted, pending
        self._refused: RateLimited | None = None
        self._checked = False

    def check(self) -> None:
        """Raise RateLimited if the submission is past a limit (each time asked)."""
        if not self._checked:
            values = self._pending.values()
            full = [
                (item, key)
                for (item, key), value in zip(self._counted, values, strict=True)
                if value > item.amount
            ]
            if full:
                wait = max(_retry_after(self._counters, item, key) for item, key in full)
                self._refused = RateLimited(wait)
            self._checked = True
        if self._refused is not None:
            raise self._refused


def _retry_after(counters: SharedCounters, item: RateLimitItem, key: str) -> int:
    # Never longer than the window (the storage's expiry rounds up to a second), never 0;
    # the whole window when the storage cannot say (it went away meanwhile).
    window = item.get_expiry()
    left = math.ceil(counters.expires_at(key) - time.time())
    return max(1, min(window, left)) if left > 0 else window
