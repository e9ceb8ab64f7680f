"""PostgreSQL restarted under load: 503 while it is away, never a false 2xx, recovery unaided.

The test restarts a cluster of its own (see `dedicated_cluster`), never the machine's main one.
"""

from __future__ import annotations

import pytest

from .conftest import UNAVAILABLE, Load, create_form, settle


@pytest.mark.fault
def test_postgresql_restarted_under_load_answers_503_then_recovers_by_itself(
    dedicated_cluster, mail, stacks, report, tmp_path
):
    cluster = dedicated_cluster
    database_url = cluster.create_database("formrelay", tmp_path)
    key = create_form(database_url, tmp_path / "instance")
    # A lease longer than the outage: a worker records what it sent once the database is back.
    stack = stacks(database_url, mail.port, FORMRELAY_LEASE_SECONDS="20")
    web, worker = stack.web(), stack.worker()
    load = Load(stack.form_url(key), duration=14.0, rate=80).start()

    load.at(2.0)
    restart_began = load.elapsed()
    cluster.ctl("restart", "-m", "fast")  # a quick restart: new connections after a blip
    restarted = load.elapsed()
    load.at(5.0)
    cluster.ctl("stop", "-m", "fast")  # an outage of 3 s
    down = load.elapsed()
    load.at(down + 3.0)
    starting = load.elapsed()
    cluster.ctl("start")
    up = load.elapsed()
    load.join()
    ledger = settle(database_url, load.acked, mail)
    during_outage = load.outcomes(down, starting)
    recovery = load.first_success_after(up)
    recovery_after_restart = load.first_success_after(restarted)

    report(
        "postgresql-restart",
        acknowledged=ledger.acknowledged,
        stored=ledger.stored,
        delivered=ledger.delivered,
        lost=ledger.lost,
        duplicated=ledger.duplicated,
        restart_took_s=restarted - restart_began,
        outage_s=up - down,
        answers_during_outage=dict(during_outage),
        first_2xx_after_start_s=recovery,
        first_2xx_after_restart_s=recovery_after_restart,
        refusals={f"{s} Retry-After={r}": n for (s, r, _), n in load.refusals.items()},
        deliveries=dict(ledger.statuses),
        worker_iterations_failed=worker.output().count("worker iteration failed"),
    )
    assert not load.problems
    # While the database is away every request is answered, and answered 503.
    assert during_outage and set(during_outage) == {"503"}, during_outage
    assert {message for (_, _, message) in load.refusals} == {UNAVAILABLE}
    assert {(status, retry) for (status, retry, _) in load.refusals} == {(503, "30")}
    # Every 2xx names a submission that is stored, and its mail went out once, the worker
    # recording what it had sent when its database came back.
    assert ledger.lost == 0, ledger.missing
    assert ledger.duplicated == 0
    assert set(ledger.statuses) == {"sent"}
    # Back by itself: neither process was restarted.
    assert web.running and worker.running
    assert recovery is not None and recovery < 5, recovery
