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

from .counters import SharedCounters
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
    counted = [
        (item, item.key_for("public", scope, client))
        for scope, text in limits
        for item in windows(text)
    ]
    values = counters.incr_many([(key, item.get_expiry()) for item, key in counted])
    full = [
        (item, key)
        for (item, key), value in zip(counted, values, strict=True)
        if value > item.amount
    ]
    if full:
        raise RateLimited(max(_retry_after(counters, item, key) for item, key in full))


def _retry_after(counters: SharedCounters, item: RateLimitItem, key: str) -> int:
    # Never longer than the window (the storage's expiry rounds up to a second), never 0;
    # the whole window when the storage cannot say (it went away meanwhile).
    window = item.get_expiry()
    left = math.ceil(counters.expires_at(key) - time.time())
    return max(1, min(window, left)) if left > 0 else window
