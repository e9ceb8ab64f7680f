"""The dashboard's writes on SQLite while public traffic is stored: they wait their turn.

Here the app is served on a real port with the machine's committer process beside it (as
`formrelay serve` and the Procfile run it), while four clients post to a form without a
pause. An owner logging in, changing a form's settings or marking spam waits behind the
committer's batches instead of failing with "database is locked"; and a log-in that fails
on the server's side is never counted as a wrong password.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from formrelay import create_app
from formrelay.extensions import db
from formrelay.ingest import group_commit
from formrelay.models import Form, Submission

from ..factories import PASSWORD, make_form, make_submission
from ..servers import wait_until
from ..test_committer import reachable

pytestmark = pytest.mark.slow

_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class Served:
    """The test's app on a real port, with a form and one stored submission of it."""

    app: Flask
    url: str
    form_key: str
    submission_id: int


@pytest.fixture
def served(databases, app_config: dict[str, object]) -> Iterator[Served]:
    if databases.name != "sqlite":
        pytest.skip("SQLite's one writer at a time; PostgreSQL locks rows")
    app = create_app({**app_config, "committer": "process"})
    group = group_commit(app)
    with app.app_context():
        group.start()
        wait_until(lambda: reachable(group.remote), 20)
        form = make_form(db.session)
        submission = make_submission(db.session, form)
        key, submission_id = form.key, submission.id
        db.session.remove()
        server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_Quiet
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Served(app, f"http://127.0.0.1:{server.server_port}", key, submission_id)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
            group.close()
            child = group.remote.child
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
            db.session.remove()
            db.engine.dispose()


@dataclass
class Flood:
    """Clients posting to a form's public endpoint without a pause, each in a thread."""

    url: str
    clients: int = 4
    answers: Counter[int] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _post(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                r = client.post(
                    self.url, json={"message": "hello"}, headers={"Accept": "application/json"}
                )
                self.answers[r.status_code] += 1

    def __enter__(self) -> Flood:
        self._threads = [threading.Thread(target=self._post) for _ in range(self.clients)]
        for t in self._threads:
            t.start()
        # Under way: the committer is storing batches before the test acts.
        wait_until(lambda: self.answers.total() >= 20, 20, lambda: str(self.answers))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def flood(served: Served) -> Flood:
    return Flood(f"{served.url}/f/{served.form_key}")


def csrf_token(browser: httpx.Client, page: str) -> str:
    response = browser.get(page)
    found = _TOKEN.search(response.text)
    assert found, f"no CSRF token on {page} ({response.status_code}): {response.text[:300]}"
    return found.group(1)


def log_in(browser: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    token = csrf_token(browser, "/login")
    return browser.post(
        "/login", data={"csrf_token": token, "email": "owner@example.com", "password": password}
    )


def browser(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, timeout=60)


def test_owners_log_in_while_submissions_pour_in(served):
    """Eight log-ins in a row, more than the five failures an account may have a minute:
    each is let in."""
    with flood(served) as posts:
        answers = []
        for _ in range(8):
            with browser(served) as b:
                answers.append(log_in(b).status_code)
    assert answers == [302] * 8
    assert set(posts.answers) == {200}


def test_a_settings_change_is_saved_while_submissions_pour_in(served):
    with browser(served) as b:
        assert log_in(b).status_code == 302
        page = f"/forms/{served.form_key}/settings"
        with flood(served) as posts:
            answers = []
            for n in range(5):
                data = {"csrf_token": csrf_token(b, page), "name": f"Renamed {n}", "subject": ""}
                answers.append(b.post(page, data=data).status_code)
    assert answers == [302] * 5
    assert set(posts.answers) == {200}
    with served.app.app_context():
        assert db.session.scalar(select(Form.name)) == "Renamed 4"


def test_a_spam_mark_is_saved_while_submissions_pour_in(served):
    detail = f"/submissions/{served.submission_id}"
    with browser(served) as b:
        assert log_in(b).status_code == 302
        with flood(served) as posts:
            answers = []
            for action in ("spam", "not-spam") * 3:
                data = {"csrf_token": csrf_token(b, detail)}
                answers.append(b.post(f"{detail}/{action}", data=data).status_code)
    assert answers == [303] * 6
    assert set(posts.answers) == {200}
    with served.app.app_context():
        assert db.session.get(Submission, served.submission_id).is_spam is False


@pytest.fixture
def short_wait(app_config: dict[str, object]) -> dict[str, object]:
    """A busy timeout a test can outlast: the database counts as away after it."""
    app_config["sqlite_busy_timeout"] = 0.2
    return app_config


def test_a_log_in_the_database_could_not_store_is_not_a_failed_attempt(short_wait, served):
    """Six log-ins refused with a 503 while another program holds SQLite's write lock for
    longer than the busy timeout, then the lock is let go: the right password gets in, as
    if none of them had happened (five wrong ones a minute would have closed the account)."""
    database = db.engine.url.database
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answers = []
        for _ in range(6):
            with browser(served) as b:
                response = log_in(b)
                answers.append((response.status_code, response.headers.get("Retry-After")))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answers == [(503, "30")] * 6
    with browser(served) as b:
        assert log_in(b).status_code == 302
