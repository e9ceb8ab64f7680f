"""Counters that every process sees: in RATELIMIT_STORAGE_URI's storage (Redis shared by
all processes and machines, or memory), with this process's memory standing in while the
storage is unreachable.

A counter is a convenience for limits, never a reason to lose mail: storage errors never
reach the caller. An outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from limits.storage import MemoryStorage, Storage, storage_from_string

log = logging.getLogger("formrelay.counters")

RETRY_SECONDS = 5.0  # while the storage is down, it is tried again this often


class SharedCounters:
    def __init__(self, uri: str, *, key_prefix: str = "formrelay") -> None:
        self.uri = uri
        self.key_prefix = key_prefix
        self._memory = MemoryStorage()
        self._storage: Storage | None = None
        self._down_since: float | None = None
        self._last_try = 0.0
        self._lock = threading.Lock()

    def _primary(self) -> Storage:
        if self._storage is None:
            if self.uri.startswith("memory://"):
                self._storage = self._memory
            else:
                options: dict[str, float | str | bool] = {
                    "socket_timeout": 1.0,
                    "socket_connect_timeout": 1.0,
                }
                storage = storage_from_string(self.uri, **options)
                assert isinstance(storage, Storage)  # a synchronous scheme (checked at start)
                self._storage = storage
        return self._storage

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount` to the counter `key` (which expires `expiry` seconds after it is
        made) and return its value."""
        key = f"{self.key_prefix}:{key}"
        now = time.monotonic()
        if self._down_since is not None and now - self._last_try < RETRY_SECONDS:
            return int(self._memory.incr(key, expiry, amount))
        try:
            value = int(self._primary().incr(key, expiry, amount))
        except Exception as exc:  # any storage error: redis' ConnectionError, TimeoutError...
            with self._lock:
                self._last_try = now
                if self._down_since is None:
                    self._down_since = now
                    log.warning(
                        "counter storage %s unreachable; counting in this process until it "
                        "is back: %s",
                        _masked(self.uri),
                        exc,
                    )
            return int(self._memory.incr(key, expiry, amount))
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    log.warning(
                        "counter storage %s is back after %.0f s",
                        _masked(self.uri),
                        now - self._down_since,
                    )
                    self._down_since = None
        return value

    def clear(self, key: str) -> None:
        """Remove the counter `key` (wherever it is counted now)."""
        key = f"{self.key_prefix}:{key}"
        self._memory.clear(key)
        if self._down_since is None:
            with contextlib.suppress(Exception):  # down: incr notices it and says so
                self._primary().clear(key)


def _masked(uri: str) -> str:
    head, at, tail = uri.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if at else uri
