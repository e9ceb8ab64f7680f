"""Counters that every process sees: in RATELIMIT_STORAGE_URI's storage (Redis shared by
all processes and machines, or memory), with this process's memory standing in while the
storage is unreachable.

A counter is a convenience for limits, never a reason to lose mail: storage errors never
reach the caller. An outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from limits.storage import RedisStorage, Storage, storage_from_string

if TYPE_CHECKING:  # redis-py (and the cryptography it loads) only where Redis counts
    from redis.commands.core import Script

log = logging.getLogger("formrelay.counters")

RETRY_SECONDS = 5.0  # while the storage is down, it is tried again this often
# Every counter of one call in one round trip: KEYS are the counters, ARGV their expiries
# in seconds and then their amounts. A counter's expiry is set when its amount made it; a
# key that comes twice is counted twice, in order, as two calls would have.
_INCR_MANY = """
local n = #KEYS
local values = {}
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[n + i])
  local value = redis.call('incrby', key, amount)
  if value == amount then redis.call('expire', key, ARGV[i]) end
  values[i] = value
end
return values
"""
# How long a caller waits for its batch before counting in memory (beyond the socket's
# own 1 s timeout, which ends a batch first).
BATCH_WAIT_SECONDS = 5.0


@dataclass
class _Counts:
    keys: list[str]
    expiries: list[int]
    amount: int
    done: threading.Event = field(default_factory=threading.Event)
    values: list[int] | None = None
    error: BaseException | None = None


class GroupCount:
    """Concurrent callers' counts, sent to Redis together: one script call for all.

    A round trip to Redis costs about 100 us of CPU on this machine (redis-py and the
    kernel's loopback, cProfile), as much as every other check of a submission; callers
    arriving while one is out share the next, as group commit's submissions share a
    transaction. One thread per process sends them (started on first use, again after a
    fork); a failure fails the whole batch, which then counts in memory (SharedCounters).
    """

    def __init__(self, send: Callable[[list[str], list[int], list[int]], list[int]]) -> None:
        self._send = send  # (keys, expiries, amounts) -> values, in one round trip
        self._queue: list[_Counts] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def count(self, keys: list[str], expiries: list[int], amount: int) -> list[int]:
        """The counters' values once counted, with whatever else was queued meanwhile."""
        item = _Counts(keys, expiries, amount)
        with self._ready:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="formrelay-group-count", daemon=True
                )
                self._thread.start()
            self._queue.append(item)
            self._ready.notify()
        if not item.done.wait(BATCH_WAIT_SECONDS):
            raise TimeoutError("the counter storage did not answer in time")
        if item.error is not None:
            raise item.error
        assert item.values is not None
        return item.values

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                batch, self._queue = self._queue, []
            try:
                values = self._send(
                    [k for i in batch for k in i.keys],
                    [e for i in batch for e in i.expiries],
                    [i.amount for i in batch for _ in i.keys],
                )
                start = 0
                for i in batch:
                    i.values = values[start : start + len(i.keys)]
                    start += len(i.keys)
            except BaseException as exc:  # the storage's: each caller decides
                for i in batch:
                    i.error = exc
            finally:
                for i in batch:
                    i.done.set()


class LocalCounts:
    """Fixed-window counters in this process (memory://, and Redis' stand-in while it is
    down). limits' MemoryStorage does the same, but starts a timer thread to expire keys
    whenever the last one has ended, every 10 ms under load: a tenth of the public
    endpoint's request time went there (cProfile). Here expired counters are swept at most
    once every SWEEP_SECONDS, by the call that finds it due."""

    SWEEP_SECONDS = 10.0

    def __init__(self) -> None:
        self._counts: dict[str, list[float]] = {}  # key: [expires at, value]
        self._lock = threading.Lock()
        self._swept = time.time()

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            if now - self._swept > self.SWEEP_SECONDS:
                self._swept = now
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
            entry = self._counts.get(key)
            if entry is None or entry[0] <= now:
                entry = self._counts[key] = [now + expiry, 0]
            entry[1] += amount
            return int(entry[1])

    def get_expiry(self, key: str) -> float:
        entry = self._counts.get(key)
        return entry[0] if entry is not None else time.time()

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)


class SharedCounters:
    def __init__(self, uri: str, *, key_prefix: str = "formrelay") -> None:
        self.uri = uri
        self.key_prefix = key_prefix
        self._memory = LocalCounts()
        self._storage: Storage | None = None
        self._down_since: float | None = None
        self._last_try = 0.0
        self._lock = threading.Lock()
        self._script: Script | None = None
        self._group = GroupCount(self._in_redis)

    @property
    def per_process(self) -> bool:
        """Whether the counts live in this process's memory (memory://), unseen by others."""
        return self.uri.startswith("memory://")

    def _primary(self) -> Storage | LocalCounts:
        if self.uri.startswith("memory://"):
            return self._memory
        if self._storage is None:
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
        return self.incr_many([(key, expiry)], amount)[0]

    def incr_many(
        self, counters: Sequence[tuple[str, int]], amount: int = 1, *, alone: bool = False
    ) -> list[int]:
        """Add `amount` to each counter (key, expiry) and return their values, in one
        round trip to the storage however many they are (shared with other threads'; or,
        `alone`, made by this thread: for a caller with no others beside it, such as
        group commit's, which counts whole batches, and would only wait on the hand-over)."""
        keys = [f"{self.key_prefix}:{key}" for key, _ in counters]
        expiries = [expiry for _, expiry in counters]
        now = time.monotonic()
        if self._down_since is not None and now - self._last_try < RETRY_SECONDS:
            return self._in_memory(keys, expiries, amount)
        try:
            storage = self._primary()
            if isinstance(storage, RedisStorage) and alone:
                values = self._in_redis(keys, expiries, [amount] * len(keys))
            elif isinstance(storage, RedisStorage):
                values = self._group.count(keys, expiries, amount)
            else:
                values = [
                    int(storage.incr(k, e, amount)) for k, e in zip(keys, expiries, strict=True)
                ]
        except Exception as exc:  # any storage error: redis' ConnectionError, TimeoutError...
            return self._failed(exc, keys, expiries, amount, now)
        self._back(now)
        return values

    def _failed(
        self, exc: BaseException, keys: list[str], expiries: list[int], amount: int, now: float
    ) -> list[int]:
        with self._lock:
            self._last_try = now
            if self._down_since is None:
                self._down_since = now
                log.warning(
                    "counter storage %s unreachable; counting in this process until it is back: %s",
                    _masked(self.uri),
                    exc,
                )
        return self._in_memory(keys, expiries, amount)

    def _back(self, now: float) -> None:
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    log.warning(
                        "counter storage %s is back after %.0f s",
                        _masked(self.uri),
                        now - self._down_since,
                    )
                    self._down_since = None

    def expires_at(self, key: str) -> float:
        """When the counter `key` expires (time.time()'s clock); now when it does not exist."""
        key = f"{self.key_prefix}:{key}"
        if self._down_since is None:
            with contextlib.suppress(Exception):  # down: incr notices it and says so
                return float(self._primary().get_expiry(key))
        return float(self._memory.get_expiry(key))

    def _in_redis(self, keys: list[str], expiries: list[int], amounts: list[int]) -> list[int]:
        storage = self._primary()
        assert isinstance(storage, RedisStorage)
        if self._script is None:
            self._script = storage.get_connection().register_script(_INCR_MANY.encode())
        values = self._script(
            keys=[storage.prefixed_key(k) for k in keys], args=[*expiries, *amounts]
        )
        return [int(v) for v in values]

    def _in_memory(self, keys: list[str], expiries: list[int], amount: int) -> list[int]:
        return [int(self._memory.incr(k, e, amount)) for k, e in zip(keys, expiries, strict=True)]

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
