"""Files leave with their submissions: deleting one, a selection, a form; retention
(`formrelay purge`, and the worker daily); and the sweep of objects no row names."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from click.testing import Result
from flask.cli import ScriptInfo
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from formrelay.cli import cli
from formrelay.extensions import db
from formrelay.models import Submission, utcnow
from formrelay.services import attachments as files
from formrelay.settings import get_settings
from formrelay.storage import get_storage, new_key
from formrelay.worker import make_worker

from .auth import post_form
from .uploads import PDF, Stored, attachments, make_files_form, moto_s3_url, post, storage

__all__ = ["moto_s3_url", "storage"]  # fixtures, imported for pytest


def run(app, runner: FlaskCliRunner, *args: str) -> Result:
    info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
    return runner.invoke(cli, list(args), obj=info)


def upload(client, form, name="cv.pdf"):
    r = post(client, form, [("cv", (name, PDF, "application/pdf"))])
    assert r.status_code == 200, r.json
    return r.json["id"]


def age(submission_id: int, days: int) -> None:
    db.session.rollback()
    submission = db.session.get(Submission, submission_id)
    submission.created_at = utcnow() - timedelta(days=days)
    db.session.commit()


def test_deleting_a_submission_in_the_dashboard_deletes_its_files(storage: Stored, client, auth):
    form = make_files_form()
    gone, kept = upload(client, form, "gone.pdf"), upload(client, form, "kept.pdf")
    auth.login()
    r = post_form(
        client,
        f"/submissions/{gone}",
        {"confirmed": "1"},
        action=f"/submissions/{gone}/delete",
    )
    assert r.status_code in (302, 303)
    assert [a.filename for a in attachments()] == ["kept.pdf"]
    [left] = attachments()
    assert len(storage.objects()) == 1 and left.storage_key in storage.objects()[0]
    assert db.session.get(Submission, kept) is not None


def test_deleting_a_form_deletes_its_files(storage: Stored, client, auth):
    form = make_files_form()
    upload(client, form)
    auth.login()
    r = post_form(client, f"/forms/{form.key}/delete")
    assert r.status_code in (302, 303)
    assert attachments() == [] and storage.objects() == []


def test_a_rolled_back_deletion_keeps_the_files(storage: Stored, client):
    form = make_files_form()
    sid = upload(client, form)
    from formrelay.services import inbox
    from formrelay.services.accounts import find_user

    inbox.delete_submissions(db.session, find_user(db.session, "owner@example.com"), [sid])
    db.session.rollback()
    assert len(storage.objects()) == 1 and len(attachments()) == 1


def test_purge_deletes_what_is_older_than_the_forms_retention(storage: Stored, app, client, runner):
    form = make_files_form(retention_days=30)
    old, recent = upload(client, form, "old.pdf"), upload(client, form, "new.pdf")
    age(old, 31)
    age(recent, 29)
    result = run(app, runner, "purge")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"Form {form.key}: deleted 1 submission(s) older than 30 days",
        "Deleted 1 submission(s) in all.",
    ]
    db.session.rollback()
    assert list(db.session.scalars(select(Submission.id))) == [recent]
    assert [a.filename for a in attachments()] == ["new.pdf"]
    assert len(storage.objects()) == 1


def test_forms_without_their_own_retention_follow_the_setting(
    storage: Stored, app_config, tmp_path
):
    from formrelay import create_app

    app_config["retention_days"] = 7
    app = create_app(app_config)
    with app.app_context():
        client = app.test_client()
        keeps = make_files_form(retention_days=365)
        follows = make_files_form()
        a, b = upload(client, keeps), upload(client, follows)
        age(a, 10)
        age(b, 10)
        result = run(app, app.test_cli_runner(), "purge")
        assert result.exit_code == 0, result.output
        db.session.rollback()
        assert list(db.session.scalars(select(Submission.id))) == [a]
        assert len(storage.objects()) == 1
        db.session.remove()
        db.engine.dispose()


def test_the_sweep_removes_objects_no_submission_names_once_they_are_old(
    storage: Stored, app, client, runner
):
    form = make_files_form()
    upload(client, form)
    [kept] = attachments()
    store = get_storage(get_settings())
    orphan = new_key()
    writer = store.writer(orphan)
    writer.write(b"left by a crash between storing and committing")
    writer.close()
    young = new_key()  # an upload whose commit may be on its way
    if storage.kind == "local":
        old = time.time() - 2 * 3600
        path = storage.root / orphan[:2] / orphan
        os.utime(path, (old, old))
        # A write a killed process left unfinished.
        unfinished = new_key()
        stale = storage.root / unfinished[:2] / f"{unfinished}.part"
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"half")
        os.utime(stale, (old, old))
        young_writer = store.writer(young)
        young_writer.write(b"arriving")
        young_writer.close()
        result = run(app, runner, "sweep")
        assert result.exit_code == 0, result.output
        assert result.output == "Deleted 2 stored file(s) that no submission names.\n"
        assert sorted(storage.objects()) == sorted([kept.storage_key, young])
    else:
        # S3's LastModified cannot be set back: sweep as if two hours had passed.
        swept = files.sweep_orphans(db.session, store, now=utcnow() + timedelta(hours=2))
        assert swept == [orphan]
        assert storage.objects() == [f"uploads/{kept.storage_key}"]


def test_the_worker_purges_and_sweeps_at_start_then_daily(
    storage: Stored, app, client, monkeypatch
):
    form = make_files_form(retention_days=1)
    sid = upload(client, form)
    age(sid, 2)
    worker = make_worker(app)
    done = worker.housekeeping.maybe_run()
    assert done is not None and [p.deleted for p in done.purged] == [1]
    assert attachments() == [] and storage.objects() == []
    assert worker.housekeeping.maybe_run() is None  # not again the same day
    later = time.monotonic() + 24 * 3600 + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert worker.housekeeping.maybe_run() is not None


def test_submissions_list_says_how_many_files_a_submission_has(
    storage: Stored, app, client, runner
):
    form = make_files_form()
    sid = upload(client, form)
    result = run(app, runner, "submissions", "list", "--form", form.key)
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    assert (
        line.startswith(f"{sid}  ") and "(empty)  (1 file(s))  [owner@example.com pending]" in line
    )
