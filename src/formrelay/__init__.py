"""formrelay: a self-hosted backend for HTML forms."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from . import db, ingest, settings, storage, web
from .web import fastpath

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")


def create_app(config: Mapping[str, Any] | None = None, *, migrations: bool = True) -> Flask:
    """Build the app: settings (environment plus `config` overrides by field name), the
    database, group commit, the web blueprints and, unless `migrations` is false, the `db`
    commands (Flask-Migrate, with Alembic: 11 MB a web worker has no use for)."""
    loaded = settings.prepare_instance(settings.load_settings(overrides=config))
    app = fastpath.App(__name__, instance_path=str(loaded.instance_path))
    settings.init_app(app, loaded)
    db.init_app(app, loaded)
    ingest.init_app(app)
    storage.init_app(app)
    if migrations:
        from flask_migrate import Migrate

        from .extensions import db as sqlalchemy

        Migrate(app, sqlalchemy, directory=MIGRATIONS_DIR)
    web.init_app(app, loaded)
    fastpath.install(app)
    return app
