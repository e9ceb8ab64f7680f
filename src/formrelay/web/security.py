"""Headers every dashboard page sends, and the session cookie's flags."""

from __future__ import annotations

from flask import Flask, Response, request

from ..services import sign_ins
from ..settings import Settings

# No inline script or style anywhere: the vendored script and the stylesheet are files.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The public endpoint answers other sites' forms and its own thanks/error pages; it is on
# the ingest path, where every header costs, and carries no account data.
_PUBLIC_BLUEPRINTS = frozenset({"public"})


def init_app(app: Flask, settings: Settings) -> None:
    https = settings.base_url.startswith("https://")
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=https,
        # The cookie lives as long as the sign-in it names (services/sign_ins.py).
        REMEMBER_COOKIE_DURATION=sign_ins.REMEMBERED_FOR,
    )

    @app.after_request
    def security_headers(response: Response) -> Response:
        if request.blueprint in _PUBLIC_BLUEPRINTS:
            return response
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        if https or request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
