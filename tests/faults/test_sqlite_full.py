"""The SQLite database's disk full: 503 while it is, nothing acknowledged lost, recovery after.

The database lives on a small tmpfs that the test mounts (as root) and fills with a file.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import UNAVAILABLE, Load, create_form, migrated_sqlite, settle

DISK_MB = 16


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_MB mounted for the test."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12):  # down to tmpfs's page size
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


@pytest.mark.fault
def test_full_disk_answers_503_loses_nothing_and_recovers_once_space_returns(
    small_disk, mail, stacks, report, tmp_path
):
    database_url = migrated_sqlite(small_disk / "formrelay.sqlite3")
    key = create_form(database_url, tmp_path / "instance")
    # A lease longer than the full disk: the worker records what it sent once space returns.
    stack = stacks(database_url, mail.port, FORMRELAY_LEASE_SECONDS="20")
    web, worker = stack.web(), stack.worker()
    # 2 KB a submission: the database has to grow, the disk cannot hold it.
    load = Load(stack.form_url(key), duration=12.0, rate=80, padding=2048).start()

    load.at(2.0)
    filler = fill(small_disk)
    full = load.elapsed()
    load.at(7.0)
    freeing = load.elapsed()
    filler.unlink()
    freed = load.elapsed()
    load.join()
    ledger = settle(database_url, load.acked, mail)
    while_full = load.outcomes(full, freeing)
    first_refusal = min((a.at for a in load.attempts if a.outcome == "503"), default=None)
    recovery = load.first_success_after(freed)

    report(
        "sqlite-full",
        disk_mb=DISK_MB,
        acknowledged=ledger.acknowledged,
        stored=ledger.stored,
        delivered=ledger.delivered,
        lost=ledger.lost,
        duplicated=ledger.duplicated,
        answers_while_full=dict(while_full),
        first_503_after_full_s=None if first_refusal is None else first_refusal - full,
        first_2xx_after_space_s=recovery,
        outcomes=dict(load.outcomes()),
        deliveries=dict(ledger.statuses),
        web_workers_respawned=web.output().count("Spawning worker") - 2,
        database_mb=round(os.path.getsize(small_disk / "formrelay.sqlite3") / 2**20, 2),
    )
    assert not load.problems
    assert "503" in while_full, "the full disk never stopped a write"
    assert set(load.outcomes()) <= {"200", "503"}, load.outcomes()
    assert {(s, r, m) for (s, r, m) in load.refusals} == {(503, "30", UNAVAILABLE)}
    assert ledger.lost == 0, ledger.missing
    assert ledger.duplicated == 0
    assert set(ledger.statuses) == {"sent"}
    assert web.running and worker.running
    assert recovery is not None and recovery < 5, recovery
