"""The `formrelay worker` process's engine: its commits do not wait for the disk, the
web app's (group commit's above all) do."""

from __future__ import annotations

from sqlalchemy import text

from formrelay.db import worker_engine
from formrelay.extensions import db
from formrelay.settings import get_settings


def _durability(engine) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return str(conn.execute(text("PRAGMA synchronous")).scalar_one())
        return str(conn.execute(text("SHOW synchronous_commit")).scalar_one())


def test_the_worker_commits_without_waiting_for_the_disk_and_the_app_does(app):
    engine = worker_engine(db.engine.url, get_settings(app))
    try:
        assert engine.url == db.engine.url  # the same database
        if engine.dialect.name == "sqlite":
            # 1 is NORMAL, 2 is FULL.
            assert (_durability(engine), _durability(db.engine)) == ("1", "2")
        else:
            assert (_durability(engine), _durability(db.engine)) == ("off", "on")
    finally:
        engine.dispose()
