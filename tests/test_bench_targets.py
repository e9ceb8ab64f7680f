"""make bench's targets: which figures are judged, against what, and which are only reported.

The figures are made up; nothing is measured here.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.run import pooled, targets


def ingest_figures(**overrides: Any) -> dict[str, Any]:
    """One database's ingest section as bench/run.py reports it, every target met."""
    figures: dict[str, Any] = {
        "bare_rps": 6000.0,
        "parse_rps": 2700.0,
        "committer_rps": 1500.0,
        "plain_rps": 1400.0,
        "guarded_rps": 1300.0,
        "all_checks_rps": 1300.0,
        "worker_rps": 1200.0,
        "ratio": 0.2,
        "vs_committer": 0.93,
        "vs_parse": 0.52,
        "worker_vs_committer": 0.8,
        "worker_sent_per_s": 70.0,
        "half_peak": {"p99_ms": 30.0},
        "committer_half_peak": {"p99_ms": 25.0},
        "half_peak_hey": {"p99_ms": 40.0},
        "all_checks_vs_plain": 0.93,
        "guarded_vs_plain": 0.93,
        "all_checks_non_2xx": 0,
        "acknowledged": 1000,
        "stored": 1000,
        "references_non_2xx": 0,
        "committer_acknowledged": 1000,
        "committer_stored": 1000,
        "peak_web_worker_rss_mb": 90.0,
    }
    figures.update(overrides)
    return figures


def delivery_figures(worker: float, reference: float) -> dict[str, Any]:
    return {
        "smtp": {"messages": 3000, "received": 3000, "rate_per_s": worker},
        "smtp_reference": {"messages": 3000, "received": 3000, "rate_per_s": reference},
        "smtp_vs_reference": worker / reference,
    }


def rows(report: dict[str, Any]) -> dict[str, tuple[float, str, bool]]:
    return {name: (value, goal, ok) for name, value, goal, ok in targets(report)}


def test_ingest_against_the_parse_only_app_is_reported_only() -> None:
    found = rows({"ingest": {"sqlite": ingest_figures(vs_parse=0.2)}})

    assert found["ingest_sqlite_vs_parse"] == (0.2, "report", True)


@pytest.mark.parametrize(("p99", "passes"), [(30.0, True), (37.5, True), (40.0, False)])
def test_half_peak_p99_is_judged_against_the_minimal_committers_own(
    p99: float, passes: bool
) -> None:
    found = rows({"ingest": {"sqlite": ingest_figures(half_peak={"p99_ms": p99})}})

    assert found["ingest_sqlite_p99_vs_committer"] == (p99 / 25.0, "<=1.5", passes)
    # The two latencies themselves are reported, whatever they are.
    assert found["ingest_sqlite_p99_ms_at_half_peak"] == (p99, "report", True)
    assert found["ingest_sqlite_committer_p99_ms_at_half_peak"] == (25.0, "report", True)


def test_no_absolute_latency_target_is_left() -> None:
    goals = {goal for _, goal, _ in rows({"ingest": {"sqlite": ingest_figures()}}).values()}

    assert "<15" not in goals


def test_ingest_against_the_minimal_committer_stays_a_target_on_both_databases() -> None:
    report = {
        "ingest": {
            "sqlite": ingest_figures(vs_committer=0.95),
            "postgresql": ingest_figures(vs_committer=0.85),
        }
    }

    found = rows(report)

    assert found["ingest_sqlite_vs_committer"] == (0.95, ">=0.9", True)
    assert found["ingest_postgresql_vs_committer"] == (0.85, ">=0.9", False)


@pytest.mark.parametrize(("worker", "passes"), [(300.0, True), (250.0, True), (200.0, False)])
def test_smtp_delivery_is_judged_against_the_minimal_sender(worker: float, passes: bool) -> None:
    found = rows({"delivery": delivery_figures(worker, reference=500.0)})

    assert found["delivery_smtp_vs_reference"] == (worker / 500.0, ">=0.5", passes)
    assert found["delivery_smtp_per_s"] == (worker, "report", True)
    assert found["delivery_smtp_reference_per_s"] == (500.0, "report", True)


def paced_run(requests: int, p99_ms: float, max_ms: float) -> dict[str, Any]:
    """A paced run whose latencies rise evenly from 1 ms to `p99_ms` at the 99th percentile."""
    quantiles = [(float(p), 1.0 + (p99_ms - 1.0) * p / 99) for p in range(1, 100)]
    return {
        "requests": requests,
        "seconds": 1.0,
        "mean_ms": p99_ms / 2,
        "non_2xx": 0,
        "socket_errors": 0,
        "p99_ms": p99_ms,
        "quantiles": [*quantiles, (100.0, max_ms)],
    }


def test_paced_turns_pool_as_one_run() -> None:
    alike = pooled([paced_run(500, 20.0, 30.0), paced_run(500, 20.0, 30.0)], rate=500.0)
    # A slow turn among fast ones: its slowest requests are the pooled run's slowest.
    mixed = pooled([paced_run(900, 10.0, 11.0), paced_run(100, 50.0, 60.0)], rate=500.0)

    assert alike["p99_ms"] == 20.0
    assert alike["requests"] == 1000
    assert alike["turns_p99_ms"] == [20.0, 20.0]
    assert 40.0 < mixed["p99_ms"] <= 50.0
