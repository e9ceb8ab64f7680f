"""The `formrelay worker` process's engine on SQLite: its commits do not wait for the
disk, the web app's (group commit's above all) do. On PostgreSQL it has the app's."""

from __future__ import annotations

from sqlalchemy import text

from formrelay.extensions import db
from formrelay.worker import make_worker


def _durability(engine) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return str(conn.execute(text("PRAGMA synchronous")).scalar_one())
        return str(conn.execute(text("SHOW synchronous_commit")).scalar_one())


def test_the_worker_commits_without_waiting_for_the_disk_and_the_app_does(app):
    engine = make_worker(app, own_engine=True).session_factory.kw["bind"]
    try:
        assert engine.url == db.engine.url  # the same database
        if engine.dialect.name == "sqlite":
            # 1 is NORMAL, 2 is FULL.
            assert (_durability(engine), _durability(db.engine)) == ("1", "2")
        else:
            assert engine is db.engine and _durability(engine) == "on"
    finally:
        if engine is not db.engine:
            engine.dispose()
