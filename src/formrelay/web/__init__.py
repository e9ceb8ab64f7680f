"""HTTP: one blueprint per area, bound to the app by init_app."""

from __future__ import annotations

from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.routing import IntegerConverter, Map, UnicodeConverter

from ..extensions import csrf, limiter, login_manager
from ..models import MAX_ID
from ..settings import Settings
from .proxies import client_addresses


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, set up only for requests that bring a session cookie.

    Flask opens the session of every request, and building the signer costs as much as
    parsing a submission; the public endpoint, which most requests are for, never needs it.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # No Cookie header at all (the public endpoint's usual case): nothing to parse.
        if "HTTP_COOKIE" not in request.environ or self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


class NoNulConverter(UnicodeConverter):
    """A path segment (a form's key, a token): not one with a NUL in it, which no key holds
    and which PostgreSQL refuses in a query's text (a 503 for /f/%00, found by the fuzzer):
    such a path matches no route, a 404."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.regex = self.regex.replace("[^/]", "[^/\\x00]")  # UnicodeConverter's, less NUL


class IdConverter(IntegerConverter):
    """A row's id in a path: ASCII digits from 1 to MAX_ID, so that a path matches no route
    (a 404) when its id cannot name a row, before any query is made.

    One converter for every `<int:...>` rule, rather than a check in each lookup: an id past
    the column's range made the database raise (a 500 on SQLite, a 503 on PostgreSQL)
    wherever a view queried with it, and a rule added later is covered without anyone
    remembering to check.
    """

    regex = r"[0-9]{1,10}"  # \d would take other scripts' digits, which int() reads

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask, settings: Settings) -> None:
    """Sessions, proxies, CORS for the public endpoint, the blueprints and error handlers."""
    app.url_map.converters["default"] = NoNulConverter
    app.url_map.converters["string"] = NoNulConverter
    app.url_map.converters["int"] = IdConverter
    app.secret_key = settings.secret_key
    app.session_interface = CookieSessions()
    app.wsgi_app = client_addresses(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign,assignment]
    from . import (
        auth,
        errors,
        files,
        health,
        hooks,
        main,
        public,
        screening,
        security,
        templating,
        transactions,
    )
    from .dashboard import admin, forms, submissions
    from .dashboard import exports as dashboard_exports

    # Cross-origin posts are for the public endpoint only; nothing else answers other sites.
    app.after_request(public.cross_origin)
    security.init_app(app, settings)
    transactions.init_app(app)
    templating.init_app(app)
    csrf.init_app(app)
    _init_login(app)
    _init_limiter(app, settings)
    screening.init_app(app, settings)

    app.register_blueprint(health.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(forms.bp)
    app.register_blueprint(submissions.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(dashboard_exports.bp)
    hooks.init_app(app)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(files.bp)
    # Other sites' forms post here with no token of ours; the form key is what they hold.
    csrf.exempt(public.bp)
    csrf.exempt(health.bp)
    # SNS signs its messages; it holds no token or cookie of ours.
    csrf.exempt(hooks.bp)
    errors.register(app)


def _init_login(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Log in to see this page."
    login_manager.login_message_category = "info"
    # A session cookie replayed from another browser (address and agent) is dropped.
    login_manager.session_protection = "strong"


def _init_limiter(app: Flask, settings: Settings) -> None:
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_uri,
        # No X-RateLimit-* headers on every response: each costs a storage round trip
        # (Redis) on the public endpoint's hot path. A 429 still says Retry-After
        # (web/errors.py), from the one limit it broke.
        RATELIMIT_HEADERS_ENABLED=False,
        # A limit must never turn into a 500: with its storage (Redis) down, each process
        # counts for itself until it is back.
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
    )
    if settings.ratelimit_storage_uri.startswith(("redis://", "rediss://")):
        # A Redis that stops answering (a dropped network, not a refused connection) must
        # not hold submissions for ever: after a second it counts as down (fallback above).
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
        }
    limiter.init_app(app)
