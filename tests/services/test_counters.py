"""Counters in Redis: concurrent callers share round trips, and each gets its own count."""

from __future__ import annotations

import threading

import redis

from formrelay.services.counters import SharedCounters

URL = "redis://127.0.0.1:6379/12"  # the machine's Redis, a database of this test's own


def evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_concurrent_counts_share_round_trips_and_each_gets_its_own_value():
    client = redis.Redis.from_url(URL)
    client.flushdb()
    counters = SharedCounters(URL, key_prefix="test")
    counters.incr("warm", 60)  # the script loaded, the connection made
    before = evalsha_calls(client)
    start = threading.Barrier(40)
    values: list[int] = []

    def count() -> None:
        start.wait()
        values.append(counters.incr_many([("k", 60), ("other", 60)])[0])

    threads = [threading.Thread(target=count) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(values) == list(range(1, 41))  # each its own, none lost or doubled
    assert [int(client.get(f"LIMITS:test:{k}")) for k in ("k", "other")] == [40, 40]
    assert 0 < client.ttl("LIMITS:test:k") <= 60
    assert evalsha_calls(client) - before < 40  # batched
    client.flushdb()
