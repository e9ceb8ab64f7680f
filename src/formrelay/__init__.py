"""formrelay: a self-hosted backend for HTML forms."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy.orm import sessionmaker
from werkzeug.middleware.proxy_fix import ProxyFix

from . import db as _db_events  # noqa: F401  (registers the engine event listeners)
from .db import engine_options
from .extensions import cors, db
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


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, set up only for requests that bring a session cookie.

    Flask opens the session of every request, and building the signer costs as much as
    parsing a submission; the public endpoint, which most requests are for, never needs it.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def create_app(config: Mapping[str, Any] | None = None, *, migrations: bool = True) -> Flask:
    """Build the app: settings (environment plus `config` overrides by field name), extensions,
    blueprints, and unless `migrations` is false the `db` commands (Flask-Migrate)."""
    settings = load_settings(overrides=config)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.session_interface = CookieSessions()
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
    if migrations:
        from flask_migrate import Migrate  # with Alembic, 11 MB a web worker has no use for

        Migrate(app, db, directory=MIGRATIONS_DIR)
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
