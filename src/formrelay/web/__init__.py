"""HTTP: one blueprint per area, bound to the app by init_app."""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from ..extensions import cors
from ..settings import Settings

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


def init_app(app: Flask, settings: Settings) -> None:
    """Sessions, proxies, CORS for the public endpoint, the blueprints and error handlers."""
    app.secret_key = settings.secret_key
    app.session_interface = CookieSessions()
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    # Cross-origin posts are for the public endpoint only; nothing else answers other sites.
    public_cors = {
        "origins": "*",
        "methods": ["POST"],
        "allow_headers": PUBLIC_CORS_HEADERS,
        "max_age": 86400,
    }
    cors.init_app(app, resources={r"/f/*": public_cors, r"/p/*": public_cors})

    from . import errors, health, main, public

    app.register_blueprint(health.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(public.bp)
    errors.register(app)
