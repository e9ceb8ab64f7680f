"""The public endpoint's limits, counted in fixed windows of Flask-Limiter's notation."""

from __future__ import annotations

import pytest

from formrelay.services.counters import SharedCounters
from formrelay.services.rate_limits import RateLimited, count


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
