"""formrelay: a self-hosted backend for HTML forms."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.orm import sessionmaker
from werkzeug.middleware.proxy_fix import ProxyFix

from . import db as _db_events  # noqa: F401  (registers the engine event listeners)
from .db import engine_options
from .extensions import cors, db, migrate
from .ingest import GroupCommit
from .settings import Settings, load_settings

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")
PUBLIC_CORS_HEADERS = [
    "Content-Type",
    "Accept",
    "X-Requested-With",
    "Formspree-Client",
    "Formspree-Session-Data",
]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings (environment plus `config` overrides by field name), extensions,
    blueprints."""
    settings = load_settings(overrides=config)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings),
        FORMRELAY_SETTINGS=settings,
    )
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    db.init_app(app)
    with app.app_context():
        app.extensions["formrelay.ingest"] = GroupCommit(sessionmaker(bind=db.engine))
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)
    # Cross-origin posts are for the public endpoint only; nothing else answers other sites.
    public_cors = {
        "origins": "*",
        "methods": ["POST"],
        "allow_headers": PUBLIC_CORS_HEADERS,
        "max_age": 86400,
    }
    cors.init_app(app, resources={r"/f/*": public_cors, r"/p/*": public_cors})

    from .web import errors, main, public

    app.register_blueprint(main.bp)
    app.register_blueprint(public.bp)
    errors.register(app)
    return app


def get_settings(app: Flask) -> Settings:
    settings: Settings = app.config["FORMRELAY_SETTINGS"]
    return settings
