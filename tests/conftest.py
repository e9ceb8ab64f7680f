"""Shared fixtures: an app on a fresh database (SQLite and PostgreSQL), client, runner, worker.

Every test that uses `app` runs once per database backend: `[sqlite]` always, `[postgresql]`
on the database TEST_DATABASE_URL names (.ci/run sets it) or, without it, on a database of
the run's own that it creates on the PostgreSQL at 127.0.0.1:5432 and drops at the end. Only
when neither is there are the `[postgresql]` tests skipped, saying what was tried.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask, g
from flask.testing import FlaskClient, FlaskCliRunner
from psycopg import sql
from sqlalchemy import create_engine, make_url, text
from werkzeug.test import TestResponse

from formrelay import create_app
from formrelay.extensions import db
from formrelay.ingest import group_commit
from formrelay.services import field_names
from formrelay.settings import normalize_database_url
from formrelay.web.templating import VIEWER_ZONE
from formrelay.worker import Worker, make_worker

from .auth import AuthActions
from .fakes import RecordingBackend
from .mailserver import MailServer, point_app_at
from .servers import is_setting

BASE_URL = "http://forms.test"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if is_setting(name):
            monkeypatch.delenv(name)


def _migrate(url: str, instance: Path) -> None:
    app = create_app({"database_url": url, "instance_path": instance, "secret_key": "x"})
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
        db.engine.dispose()


class SQLiteDatabases:
    """Migrates one template database per run and copies it for each test (fast)."""

    name = "sqlite"

    def __init__(self, root: Path) -> None:
        self.template = root / "template.sqlite3"
        _migrate(f"sqlite:///{self.template}", root / "instance")

    def fresh(self, tmp_path: Path) -> str:
        target = tmp_path / "formrelay.sqlite3"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"


class PostgresDatabases:
    """Migrates the PostgreSQL database at `url` once per run and empties its tables before
    each test."""

    name = "postgresql"

    def __init__(self, url: str, root: Path) -> None:
        self.url = normalize_database_url(url, root)
        engine = create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        _migrate(self.url, root / "instance")
        self.engine = create_engine(self.url)
        with self.engine.connect() as conn:
            tables = set(
                conn.scalars(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                        " AND tablename <> 'alembic_version'"
                    )
                )
            )
            self.sequences = list(
                conn.scalars(
                    text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
                )
            )
        # Children before parents, so that each DELETE finds nothing referring to its rows.
        ordered = [t.name for t in reversed(db.metadata.sorted_tables)]
        assert tables <= set(ordered), f"tables the models do not know: {tables - set(ordered)}"
        self.tables = [t for t in ordered if t in tables]

    def fresh(self, tmp_path: Path) -> str:
        # DELETE, not TRUNCATE: a TRUNCATE of the schema's tables cost each test about 70
        # ms, their DELETEs (a few rows each) about 5.
        with self.engine.begin() as conn:
            for table in self.tables:
                conn.execute(text(f"DELETE FROM {table}"))
            for sequence in self.sequences:
                conn.execute(text(f"SELECT setval('{sequence}', 1, false)"))
            conn.execute(text("INSERT INTO roles (name) VALUES ('admin'), ('member')"))
        # Ids start again: what this process saw committed before is not true any more.
        field_names.forget()
        return self.url


# Where a run without TEST_DATABASE_URL looks for a PostgreSQL to make its own database on.
LOCAL_POSTGRES = ("127.0.0.1", 5432)


class NoPostgres(Exception):
    """No database could be created on LOCAL_POSTGRES; the message says what was tried."""


class ScratchPostgresDatabase:
    """A database of this run's own on LOCAL_POSTGRES: `formrelay_test_<pid>_<random>`, so
    that runs side by side (two worktrees, two developers, CI) never share one.

    Created through the `postgres` maintenance database, connecting as the user `postgres`,
    then as the OS user (trust authentication, as on a developer's machine).
    """

    def __init__(self) -> None:
        self.host, self.port = LOCAL_POSTGRES
        self.name = f"formrelay_test_{os.getpid()}_{secrets.token_hex(4)}"
        tried: list[str] = []
        for user in dict.fromkeys(["postgres", _os_user()]):
            try:
                self._admin(user, sql.SQL("CREATE DATABASE {}"))
            except psycopg.Error as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                tried.append(f"as {user}: {reason}")
                continue
            self.user = user
            return
        raise NoPostgres(
            f"no PostgreSQL database could be created on {self.host}:{self.port} "
            f"({'; '.join(tried)})"
        )

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.name}"

    def drop(self) -> None:
        """Drop the database, closing any connection a test left open."""
        self._admin(self.user, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"))

    def _admin(self, user: str, statement: sql.SQL) -> None:
        with psycopg.connect(
            host=self.host,
            port=self.port,
            user=user,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            conn.execute(statement.format(sql.Identifier(self.name)))


class WorkerPostgresDatabase:
    """A sibling of the database TEST_DATABASE_URL names, `<name>_<worker>`, on the same
    server and as the same user, for one pytest-xdist worker; created afresh, dropped at
    the end."""

    def __init__(self, url: str, worker: str) -> None:
        self.params = psycopg.conninfo.conninfo_to_dict(url)
        self.name = f"{self.params.get('dbname') or 'formrelay_test'}_{worker}"
        self.url = make_url(url).set(database=self.name).render_as_string(hide_password=False)
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"))
        self._admin(sql.SQL("CREATE DATABASE {}"))

    def drop(self) -> None:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"))

    def _admin(self, statement: sql.SQL) -> None:
        # Through the database the URL names: its user may reach no other.
        with psycopg.connect(**self.params, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement.format(sql.Identifier(self.name)))


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (some containers)
        return "postgres"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SQLiteDatabases | PostgresDatabases]:
    if request.param == "sqlite":
        yield SQLiteDatabases(tmp_path_factory.mktemp("sqlite"))
        return
    url = os.environ.get("TEST_DATABASE_URL")
    scratch: ScratchPostgresDatabase | WorkerPostgresDatabase | None = None
    if url and os.environ.get("PYTEST_XDIST_WORKER"):
        # Parallel workers each empty their database before every test: one per worker.
        scratch = WorkerPostgresDatabase(url, os.environ["PYTEST_XDIST_WORKER"])
        url = scratch.url
    elif not url:
        try:
            scratch = ScratchPostgresDatabase()
        except NoPostgres as exc:
            pytest.skip(f"{exc}; set TEST_DATABASE_URL=postgresql://... to name a database")
        url = scratch.url
    try:
        pg = PostgresDatabases(url, tmp_path_factory.mktemp("pg"))
        yield pg
        pg.engine.dispose()
    finally:
        if scratch is not None:
            scratch.drop()


@pytest.fixture
def database_url(databases: SQLiteDatabases | PostgresDatabases, tmp_path: Path) -> str:
    return databases.fresh(tmp_path)


@pytest.fixture
def app_config(database_url: str, tmp_path: Path) -> dict[str, object]:
    """Settings overrides (by field name) for the test app; tests may add to it."""
    return {
        "database_url": database_url,
        "instance_path": tmp_path / "instance",
        "secret_key": "test-secret",
        "base_url": BASE_URL,
        # Tests post far more than a visitor would; those about the limits and ceilings
        # set their own (tests/test_spam.py).
        "rate_limit": "100000/minute",
        "rate_limit_global": "100000/minute",
        "notify_limit_per_form": 0,
        "notify_limit_global": 0,
        # Each process stores its own submissions: a committer process per test would
        # start a Python each (tests/test_committer.py runs the machine's committer).
        "committer": "thread",
    }


class FreshReadsClient(FlaskClient):
    """Ends the test's own transaction after each request, so that the test's next read
    sees what the request committed (a SQLite reader keeps its snapshot until it ends).

    Requests share the test's app context, and with it `g`, where Flask-Login keeps the
    user it loaded, Flask-WTF the CSRF token and the templates the viewer's time zone:
    dropped around each request, so that two clients (two browsers) are two users, not
    whoever asked first."""

    PER_REQUEST = ("_login_user", "csrf_token", VIEWER_ZONE)

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        for name in self.PER_REQUEST:
            g.pop(name, None)
        response = super().open(*args, **kwargs)
        for name in self.PER_REQUEST:
            g.pop(name, None)
        db.session.rollback()
        return response


@pytest.fixture
def app(app_config: dict[str, object]) -> Iterator[Flask]:
    app = create_app(app_config)
    app.config["TESTING"] = True
    app.test_client_class = FreshReadsClient
    with app.app_context():
        yield app
        group_commit(app).close()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def outbox() -> RecordingBackend:
    """A fake mail backend that keeps what it is asked to send."""
    return RecordingBackend()


@pytest.fixture
def worker(app: Flask, outbox: RecordingBackend) -> Worker:
    """A worker sending into `outbox`."""
    w = make_worker(app)
    w.sender.backend_factory = lambda channel, settings: outbox
    return w


@pytest.fixture
def smtp_server() -> Iterator[MailServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1, plain, no auth."""
    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_config(app_config: dict[str, object], smtp_server: MailServer) -> dict[str, object]:
    """Point the test app's mail at `smtp_server` (use before `app`)."""
    point_app_at(app_config, smtp_server.port)
    return app_config


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its lowest cost: the real parameters spend 64 MiB and ~0.1 s per hash
    by design, which hundreds of log-ins in the suite would pay for nothing. The hashes
    are still argon2id and verify the same way."""
    from argon2 import PasswordHasher

    from formrelay.services import passwords

    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    passwords._dummy_hash.cache_clear()
