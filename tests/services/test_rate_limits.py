"""The public endpoint's limits, counted in fixed windows of Flask-Limiter's notation."""

from __future__ import annotations

import pytest

from formrelay.services.counters import SharedCounters
from formrelay.services.rate_limits import RateLimited, check_many, count, counted


@pytest.fixture
def counters() -> SharedCounters:
    return SharedCounters("memory://", key_prefix="test")


def test_each_scope_and_client_has_its_own_count(counters):
    limits = [("form:a", "2/minute"), ("all-forms", "5/minute")]
    count(counters, "192.0.2.1", limits)
    count(counters, "192.0.2.1", limits)
    with pytest.raises(RateLimited):
        count(counters, "192.0.2.1", limits)
    count(counters, "192.0.2.2", limits)  # another address
    count(counters, "192.0.2.1", [("form:b", "2/minute"), ("all-forms", "5/minute")])


def test_the_wait_is_until_every_full_window_lets_one_through(counters):
    limits = [("form:a", "1/minute"), ("all-forms", "1/hour")]
    count(counters, "192.0.2.1", limits)
    with pytest.raises(RateLimited) as refused:
        count(counters, "192.0.2.1", limits)
    assert 60 < refused.value.retry_after <= 3600
    assert refused.value.code == "RATE_LIMITED"


def test_a_limit_of_several_windows_refuses_at_the_first_full_one(counters):
    limits = [("form:a", "3/minute;4/day")]
    for _ in range(3):
        count(counters, "192.0.2.1", limits)
    with pytest.raises(RateLimited) as refused:
        count(counters, "192.0.2.1", limits)
    assert 0 < refused.value.retry_after <= 60


def test_a_batch_counts_in_one_call_and_in_order(counters, monkeypatch):
    # Group commit counts a batch at once: three from one address against 2/minute are
    # the first two accepted and the third refused, as one by one.
    calls = []
    real = counters.incr_many
    monkeypatch.setattr(counters, "incr_many", lambda c, **kw: calls.append(c) or real(c, **kw))
    one = counted("192.0.2.1", [("form:a", "2/minute")])
    other = counted("192.0.2.9", [("form:a", "2/minute")])
    verdicts = check_many(counters, [one, other, one, one])
    assert [type(v).__name__ for v in verdicts] == ["NoneType"] * 3 + ["RateLimited"]
    assert len(calls) == 1
    assert 0 < verdicts[3].retry_after <= 60


def test_a_refusal_crosses_processes_whole():
    import pickle

    again = pickle.loads(pickle.dumps(RateLimited(42)))
    assert (type(again), again.retry_after, again.code) == (RateLimited, 42, "RATE_LIMITED")
