"""formrelay: a self-hosted backend for HTML forms."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from . import db, ingest, settings, storage, web

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")


class App(Flask):
    """Flask, remembering which of its views and hooks are coroutines.

    Flask asks inspect.iscoroutinefunction of every view and hook on every request, a
    dozen times for a submission, 3% of its time (cProfile); the answer never changes.
    """

    _SYNC_REMEMBERED = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except (KeyError, TypeError):  # TypeError: unhashable, asked each time
            found = super().ensure_sync(func)
            if len(self._sync) < self._SYNC_REMEMBERED:
                with contextlib.suppress(TypeError):
                    self._sync[func] = found
            return found


def create_app(config: Mapping[str, Any] | None = None, *, migrations: bool = True) -> Flask:
    """Build the app: settings (environment plus `config` overrides by field name), the
    database, group commit, the web blueprints and, unless `migrations` is false, the `db`
    commands (Flask-Migrate, with Alembic: 11 MB a web worker has no use for)."""
    loaded = settings.prepare_instance(settings.load_settings(overrides=config))
    app = App(__name__, instance_path=str(loaded.instance_path))
    settings.init_app(app, loaded)
    db.init_app(app, loaded)
    ingest.init_app(app)
    storage.init_app(app)
    if migrations:
        from flask_migrate import Migrate

        from .extensions import db as sqlalchemy

        Migrate(app, sqlalchemy, directory=MIGRATIONS_DIR)
    web.init_app(app, loaded)
    return app
