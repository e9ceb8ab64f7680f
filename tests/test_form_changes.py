"""A form changed while group commit holds it in its cache: what the next submission sees.

Group commit keeps enabled forms' targets in each process for TARGET_SECONDS. A change
made by another process (simulated here by a second engine, which this process's ORM
never sees) must still refuse the next submission when the form was disabled or deleted
(the INSERT checks), reach new recipients within TARGET_SECONDS, and a change made in
this process must apply at once.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, func, select, text

from formrelay.extensions import db
from formrelay.ingest import group_commit
from formrelay.models import Delivery, Recipient, Submission
from formrelay.services import forms

from .factories import make_form
from .web.shapes import post_json


@pytest.fixture
def elsewhere(app):
    """Another process's connection to the same database."""
    engine = create_engine(db.engine.url)
    yield engine
    engine.dispose()


def accepted(response) -> bool:
    return response.status_code == 200 and response.json["ok"] is True


def submissions() -> int:
    db.session.rollback()
    return int(db.session.scalar(select(func.count()).select_from(Submission)))


def targets() -> list[str]:
    db.session.rollback()
    return sorted(db.session.scalars(select(Delivery.target)))


def test_a_form_disabled_elsewhere_refuses_the_very_next_submission(client, elsewhere):
    form = make_form(db.session)
    assert accepted(post_json(client, form.key, {"message": "cached now"}))
    with elsewhere.begin() as conn:
        conn.execute(text("UPDATE forms SET enabled = false WHERE id = :id"), {"id": form.id})
    r = post_json(client, form.key, {"message": "after"})
    assert (r.status_code, r.json["errors"][0]["code"]) == (403, "INACTIVE")
    assert submissions() == 1 and len(targets()) == 1  # nothing of it stored
    # Enabled again, elsewhere: taken at once (a disabled form is never cached).
    with elsewhere.begin() as conn:
        conn.execute(text("UPDATE forms SET enabled = true WHERE id = :id"), {"id": form.id})
    assert accepted(post_json(client, form.key, {"message": "back"}))
    assert submissions() == 2


def test_a_form_deleted_elsewhere_is_not_found_by_the_next_submission(client, elsewhere):
    form = make_form(db.session)
    key = form.key
    assert accepted(post_json(client, key, {"message": "cached now"}))
    db.session.rollback()
    with elsewhere.begin() as conn:
        conn.execute(text("DELETE FROM forms WHERE id = :id"), {"id": form.id})
    r = post_json(client, key, {"message": "after"})
    assert (r.status_code, r.json["errors"][0]["code"]) == (404, "FORM_NOT_FOUND")
    assert submissions() == 0


def test_only_the_disabled_forms_submission_fails_in_its_batch(app, elsewhere):
    from formrelay.ingest import _Item
    from formrelay.services.submissions import PreparedSubmission, SubmissionMeta

    on, off = make_form(db.session, name="On"), make_form(db.session, name="Off")
    commit = group_commit()
    meta = SubmissionMeta(remote_addr="127.0.0.1")
    commit._commit([_Item(k, PreparedSubmission([("m", "warm")], meta)) for k in (on.key, off.key)])
    with elsewhere.begin() as conn:
        conn.execute(text("UPDATE forms SET enabled = false WHERE id = :id"), {"id": off.id})
    batch = [_Item(k, PreparedSubmission([("m", "batch")], meta)) for k in (on.key, off.key)]
    commit._commit(batch)
    assert batch[0].result.id and type(batch[1].result).__name__ == "FormDisabled"
    assert submissions() == 3


def test_a_recipient_added_in_this_process_gets_the_next_submission(client, app):
    form = make_form(db.session, recipients=["first@example.com"])
    assert accepted(post_json(client, form.key, {"message": "1"}))
    form.recipients.append(Recipient(email="second@example.com", verified=True))
    db.session.commit()
    assert accepted(post_json(client, form.key, {"message": "2"}))
    assert targets() == ["first@example.com", "first@example.com", "second@example.com"]


def test_a_recipient_removed_in_this_process_gets_nothing_more(client, app):
    form = make_form(db.session, recipients=["first@example.com", "second@example.com"])
    assert accepted(post_json(client, form.key, {"message": "1"}))
    second = next(r for r in form.recipients if r.email == "second@example.com")
    forms.remove_recipient(db.session, form, second.id)
    db.session.commit()
    assert accepted(post_json(client, form.key, {"message": "2"}))
    assert targets() == ["first@example.com", "first@example.com", "second@example.com"]


def test_a_recipient_added_elsewhere_is_mailed_within_target_seconds(
    client, elsewhere, monkeypatch
):
    commit = group_commit()
    monkeypatch.setattr(commit._targets, "seconds", 0.3)
    form = make_form(db.session, recipients=["first@example.com"])
    assert accepted(post_json(client, form.key, {"message": "1"}))
    with elsewhere.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO recipients (form_id, email, verified, created_at)"
                " VALUES (:id, 'second@example.com', true, CURRENT_TIMESTAMP)"
            ),
            {"id": form.id},
        )
    assert accepted(post_json(client, form.key, {"message": "2 (cached)"}))
    time.sleep(0.35)
    assert accepted(post_json(client, form.key, {"message": "3"}))
    assert targets() == ["first@example.com"] * 3 + ["second@example.com"]
