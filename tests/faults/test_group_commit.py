"""Group commit under a refused row: one submission the database refuses fails alone."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from formrelay import ingest
from formrelay.extensions import db
from formrelay.ingest import GroupCommit, StorageUnavailable
from formrelay.models import Submission
from formrelay.services.submissions import PreparedSubmission, SubmissionMeta

from ..factories import make_form


def test_a_submission_the_database_refuses_does_not_fail_those_committed_with_it(
    databases, app, monkeypatch
):
    if databases.name != "postgresql":
        pytest.skip("SQLite stores a NUL character; PostgreSQL refuses it, as a refused row")
    key = make_form(db.session).key
    batches: list[int] = []
    real_store = ingest.store_submissions

    first_commit = threading.Event()

    def store(writer, batch, targets=None, **options):
        batches.append(len(batch))
        if len(batches) == 1:  # the first commit waits while the others queue behind it
            first_commit.wait(10)
        return real_store(writer, batch, targets, **options)

    monkeypatch.setattr(ingest, "store_submissions", store)
    group = GroupCommit(db.engine)
    meta = SubmissionMeta(remote_addr="127.0.0.1")
    prepared = {
        "first": PreparedSubmission([("message", "first")], meta),
        "refused": PreparedSubmission([("message", "a\x00b")], meta),
        "second": PreparedSubmission([("message", "second")], meta),
        "third": PreparedSubmission([("message", "third")], meta),
    }
    results: dict[str, object] = {}

    def submit(name: str) -> None:
        try:
            results[name] = group.accept(key, prepared[name])
        except Exception as exc:
            results[name] = exc

    threads = {name: threading.Thread(target=submit, args=(name,)) for name in prepared}
    threads["first"].start()
    time.sleep(0.2)  # "first" holds the commit; the others queue into one batch
    for name in ("refused", "second", "third"):
        threads[name].start()
    time.sleep(0.5)
    first_commit.set()
    for thread in threads.values():
        thread.join(20)

    assert batches[:2] == [1, 3], batches  # the three really were committed together
    assert isinstance(results["refused"], StorageUnavailable)
    stored = {name: r for name, r in results.items() if not isinstance(r, Exception)}
    assert set(stored) == {"first", "second", "third"}, results
    db.session.rollback()
    messages = sorted(fields[0][1] for fields in db.session.scalars(select(Submission.fields)))
    assert messages == ["first", "second", "third"]
