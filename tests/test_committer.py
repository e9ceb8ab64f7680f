"""The machine's committer: a process of its own stores what every web process accepts.

A web process (here the test's app, with FORMRELAY_COMMITTER=process, production's
default) hands each batch to it over a Unix socket and answers only once it has said the
batch committed; with no committer to be reached it stores the batch itself; a batch
whose answer was lost answers 503 (it may be stored), never 2xx.
"""

from __future__ import annotations

import pickle
import signal
import socket
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import AuthenticationError

import pytest
from flask import Flask
from sqlalchemy import create_engine, func, select, text

from formrelay import committer, create_app
from formrelay.extensions import db
from formrelay.ingest import GroupCommit, group_commit
from formrelay.models import Delivery, Recipient, Submission

from .factories import make_form
from .web.shapes import post_json


def reachable(remote: committer.RemoteCommitter) -> bool:
    try:
        committer.connect(remote.address, remote.authkey).close()
    except (OSError, EOFError):
        return False
    return True


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def app(app_config: dict[str, object]) -> Iterator[Flask]:
    app = create_app({**app_config, "committer": "process"})
    app.config["TESTING"] = True
    group = group_commit(app)
    group.remote.idle_seconds = 1.0
    with app.app_context():
        group.start()
        wait_for(lambda: reachable(group.remote))
        yield app
        group.close()
        child = group.remote.child
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def elsewhere(app: Flask):
    """Another process's connection to the same database."""
    engine = create_engine(db.engine.url)
    yield engine
    engine.dispose()


def stored() -> tuple[int, list[str]]:
    db.session.rollback()
    count = db.session.scalar(select(func.count()).select_from(Submission))
    return int(count or 0), sorted(db.session.scalars(select(Delivery.target)))


def test_submissions_are_stored_by_the_committer_process(client, app):
    form = make_form(db.session, recipients=["owner@example.com"])
    answers = [post_json(client, form.key, {"message": f"hello {i}"}) for i in range(3)]
    assert [(a.status_code, a.json["ok"]) for a in answers] == [(200, True)] * 3
    ids = [a.json["id"] for a in answers]
    assert stored() == (3, ["owner@example.com"] * 3)
    assert sorted(db.session.scalars(select(Submission.id))) == sorted(ids)
    group = group_commit()
    # The web process never opened a connection of its own to store them.
    assert group._connection is None and group.remote._connection is not None


def test_concurrent_submissions_share_the_committers_transactions(client, app):
    key = make_form(db.session, recipients=["owner@example.com"]).key
    answers: list[int] = []

    def post() -> None:
        answers.append(post_json(app.test_client(), key, {"message": "at once"}).status_code)

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 20
    assert stored() == (20, ["owner@example.com"] * 20)


def test_the_committer_counts_the_rate_limits_and_refuses_past_them(client, app):
    form = make_form(db.session, rate_limit="2/minute")
    answers = [post_json(client, form.key, {"message": f"{i}"}) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json["errors"][0]["code"] == "RATE_LIMITED"
    assert 0 < int(answers[2].headers["Retry-After"]) <= 60
    assert stored()[0] == 2


def test_a_form_disabled_elsewhere_is_refused_by_the_committer(client, app, elsewhere):
    form = make_form(db.session)
    assert post_json(client, form.key, {"message": "cached now"}).status_code == 200
    with elsewhere.begin() as conn:
        conn.execute(text("UPDATE forms SET enabled = false WHERE id = :id"), {"id": form.id})
    r = post_json(client, form.key, {"message": "after"})
    assert (r.status_code, r.json["errors"][0]["code"]) == (403, "INACTIVE")
    assert stored()[0] == 1


def test_a_recipient_added_on_this_machine_gets_the_very_next_submission(client, app):
    # The committer caches the form's recipients; the commit that adds one tells it.
    form = make_form(db.session, recipients=["first@example.com"])
    assert post_json(client, form.key, {"message": "1"}).status_code == 200
    form.recipients.append(Recipient(email="second@example.com", verified=True))
    db.session.commit()
    assert post_json(client, form.key, {"message": "2"}).status_code == 200
    assert stored()[1] == ["first@example.com", "first@example.com", "second@example.com"]


def test_a_killed_committer_loses_nothing_and_another_takes_over(client, app, monkeypatch):
    monkeypatch.setattr(committer, "SPAWN_EVERY_SECONDS", 0.0)
    form = make_form(db.session)
    assert post_json(client, form.key, {"message": "before"}).status_code == 200
    remote = group_commit().remote
    first = remote.child
    first.send_signal(signal.SIGKILL)
    first.wait()
    # Its socket is gone: this batch is stored by the web process itself, and a new
    # committer is started for the next ones.
    assert post_json(client, form.key, {"message": "while it is down"}).status_code == 200
    wait_for(lambda: reachable(remote))
    assert remote.child is not first
    assert post_json(client, form.key, {"message": "after"}).status_code == 200
    assert group_commit().remote._connection is not None
    assert stored()[0] == 3


def at_the_committers_address(app_config, monkeypatch):
    """An app that hands its batches to a committer, and a listening socket of the test's
    at that committer's address (the app starts none of its own)."""
    app = create_app({**app_config, "committer": "process"})
    remote = group_commit(app).remote
    monkeypatch.setattr(remote, "_spawn", lambda: None)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(remote.address)
    server.listen(8)
    return app, remote, server


def test_a_batch_whose_answer_is_lost_is_a_503_never_a_2xx(app_config, monkeypatch):
    # A committer that reads the batch and dies before answering: the submission may be
    # stored, so the client must not be told it was, nor that it was not.
    app, remote, server = at_the_committers_address(app_config, monkeypatch)

    def read_and_vanish() -> None:
        while True:
            try:
                conn = committer._accept(server, remote.authkey)
            except OSError:
                return
            while True:
                _changed, batch = pickle.loads(conn.recv_bytes())
                if batch:
                    conn.close()  # as if killed in the middle of its transaction
                    break
                conn.send_bytes(pickle.dumps([]))  # a notice that forms changed

    threading.Thread(target=read_and_vanish, daemon=True).start()
    with app.app_context():
        form = make_form(db.session)
        r = post_json(app.test_client(), form.key, {"message": "lost answer"})
        assert r.status_code == 503 and r.json["ok"] is False
        group_commit(app).close()
        db.session.remove()
        db.engine.dispose()
    server.close()


def test_a_committer_that_does_not_answer_holds_nothing_up(app_config, monkeypatch):
    # Something at the committer's address that accepts and says nothing: the handshake
    # gives up within HANDSHAKE_SECONDS and the web process stores the batch itself.
    monkeypatch.setattr(committer, "HANDSHAKE_SECONDS", 0.3)
    app, _, server = at_the_committers_address(app_config, monkeypatch)
    with app.app_context():
        form = make_form(db.session)
        r = post_json(app.test_client(), form.key, {"message": "stored here"})
        assert r.status_code == 200
        assert stored()[0] == 1
        group_commit(app).close()
        db.session.remove()
        db.engine.dispose()
    server.close()


def test_only_a_process_with_the_secret_key_is_heard(app):
    remote = group_commit().remote
    with pytest.raises(AuthenticationError):
        committer.connect(remote.address, b"guessed")
    assert reachable(remote)  # still serving


def test_each_installation_and_configuration_has_its_own_committer(app):
    settings = group_commit().remote.settings
    import dataclasses

    same = committer.address("sqlite:////srv/a.sqlite3", settings)
    assert same == committer.address(
        "sqlite:////srv/a.sqlite3", pickle.loads(pickle.dumps(settings))
    )
    assert same != committer.address("sqlite:////srv/b.sqlite3", settings)
    changed = dataclasses.replace(settings, search_index=not settings.search_index)
    assert same != committer.address("sqlite:////srv/a.sqlite3", changed)
    other_key = dataclasses.replace(settings, secret_key="another")
    assert same != committer.address("sqlite:////srv/a.sqlite3", other_key)


def test_the_committer_exits_once_no_web_process_is_connected(app):
    group = group_commit()
    child = group.remote.child
    assert child.poll() is None
    group.close()
    child.wait(timeout=15)  # idle_seconds is 1 here
    assert child.returncode == 0


def test_of_web_processes_starting_at_once_exactly_one_starts_a_committer(app, app_config):
    # Each takes the address before it starts one: the others find it taken.
    remote = group_commit().remote
    first = remote.child
    others = [group_commit(create_app({**app_config, "committer": "process"})).remote]
    others.append(remote)
    for other in others:
        other._spawned_at = -committer.SPAWN_EVERY_SECONDS
        other._spawn()
    assert remote.child is first and others[0].child is None
    assert first.poll() is None and reachable(remote)


def test_web_processes_connecting_while_the_committer_starts_wait_for_it(app_config):
    # Connections made between the address being taken and the committer's first accept
    # wait in the socket's backlog.
    apps = [create_app({**app_config, "committer": "process"}) for _ in range(3)]
    remotes = [group_commit(a).remote for a in apps]
    for r in remotes:
        r.idle_seconds = 1.0
    remotes[0]._spawn()
    connected = [r._connect(spawn=True) for r in remotes]  # at once, before it has loaded
    assert all(c is not None for c in connected)
    assert [r.child is not None for r in remotes] == [True, False, False]
    with apps[0].app_context():
        form = make_form(db.session)
        assert post_json(apps[0].test_client(), form.key, {"message": "hi"}).status_code == 200
        assert group_commit(apps[0])._connection is None  # the committer stored it
    for a in apps:
        group_commit(a).close()
    assert remotes[0].child.wait(timeout=15) == 0
    for a in apps:
        with a.app_context():
            db.session.remove()
            db.engine.dispose()


def test_without_a_committer_setting_each_process_stores_its_own(app_config):
    app = create_app({**app_config, "committer": "thread"})
    assert group_commit(app).remote is None
    assert isinstance(group_commit(app), GroupCommit)


def test_sigterm_lets_the_committer_answer_its_web_processes_first(client, app):
    # A platform stopping everything at once: the web processes still finishing requests
    # keep their committer until they have gone.
    form = make_form(db.session)
    child = group_commit().remote.child
    assert post_json(client, form.key, {"message": "before"}).status_code == 200
    child.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert child.poll() is None
    assert post_json(client, form.key, {"message": "while stopping"}).status_code == 200
    assert group_commit()._connection is None  # stored by the committer, not here
    group_commit().close()
    assert child.wait(timeout=10) == 0
    assert stored()[0] == 2


def test_a_bug_while_handing_a_batch_over_fails_that_batch_only(client, app, monkeypatch):
    form = make_form(db.session)
    remote = group_commit().remote
    real = remote.store

    def broken(batch):
        monkeypatch.setattr(remote, "store", real)  # once
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(remote, "store", broken)
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    assert post_json(client, form.key, {"message": "hit by the bug"}).status_code == 500
    assert post_json(client, form.key, {"message": "after"}).status_code == 200  # thread alive
    assert stored()[0] == 1
