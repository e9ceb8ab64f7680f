"""The one place that turns errors into HTTP: an HTML page or JSON, as the client prefers."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from flask import Flask, Response, jsonify, render_template, request
from flask_limiter import RateLimitExceeded
from flask_login import current_user
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES

from ..extensions import db, limiter
from ..ingest import StorageUnavailable
from ..services.errors import DomainError, FieldError
from ..services.rate_limits import RateLimited
from ..services.urls import http_url
from ..storage import StorageError
from .negotiation import allowed_methods, wants_json

log = logging.getLogger("formrelay.web")

STATUS_BY_CODE = {
    "FORM_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "INACTIVE": 403,
    "ORIGIN_NOT_ALLOWED": 403,
    "RATE_LIMITED": 429,
    "CAPTCHA_UNAVAILABLE": 503,
    "BLOCKED": 403,
    "CONFLICT": 409,
    "TOKEN_INVALID": 400,
    "TOKEN_EXPIRED": 410,
    "TOKEN_USED": 410,
    "PAYLOAD_TOO_LARGE": 413,
    "FILES_TOO_BIG": 413,
    "UNSUPPORTED_CONTENT_TYPE": 415,
    "SERVICE_UNAVAILABLE": 503,
}


def error_response(
    status: int,
    message: str,
    errors: Sequence[FieldError] | None = None,
    *,
    database_failed: bool = False,
) -> Response:
    """`{"ok": false, "error", "errors"}` for JSON clients, an error page for browsers: in
    the dashboard's layout for a signed-in user away from the public endpoints."""
    errors = list(errors or [FieldError(_code_for(status), message)])
    if wants_json(request):
        body = {
            "ok": False,
            "error": message,
            "errors": [
                {"code": e.code, "message": e.message} | ({"field": e.field} if e.field else {})
                for e in errors
            ],
        }
        response = jsonify(body)
    else:
        html = render_template(
            "error.html",
            status=status,
            heading=_heading(status),
            message=message,
            errors=errors,
            back=_back_link(),
            dashboard_layout=not database_failed and _in_dashboard(),
        )
        response = Response(html, mimetype="text/html")
    response.status_code = status
    return response


def _code_for(status: int) -> str:
    return {
        400: "BAD_REQUEST",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        413: "PAYLOAD_TOO_LARGE",
        415: "UNSUPPORTED_CONTENT_TYPE",
        410: "GONE",
        429: "TOO_MANY_REQUESTS",
        503: "SERVICE_UNAVAILABLE",
    }.get(status, "ERROR" if status < 500 else "SERVER_ERROR")


def _heading(status: int) -> str:
    """The error page's title: a failed form only for a POST (a form sent) to an address
    that exists; an unknown page is not a form that failed."""
    if status >= 500:
        return "Something went wrong"
    if status == 404:
        return "Not found"  # the message says what: a form, or any page
    if request.method == "POST":
        return "The form could not be sent"
    return HTTP_STATUS_CODES.get(status, "Error")


# Pages that other sites' visitors see: their errors keep the plain page whoever is signed in.
PUBLIC_BLUEPRINTS = frozenset({"public", "main", "health"})


def _in_dashboard() -> bool:
    """Whether the error page is for a signed-in user of the dashboard."""
    if request.blueprint in PUBLIC_BLUEPRINTS:
        return False
    try:
        return bool(current_user and current_user.is_authenticated)
    except SQLAlchemyError:
        # Who is signed in is read from the database; when it fails here, the page that
        # says what went wrong is still shown, without the dashboard around it.
        log.warning("could not load the signed-in user for an error page", exc_info=True)
        _rollback()
        return False


def _back_link() -> str | None:
    return http_url(request.referrer)


def _rollback() -> None:
    """Roll back the request's transaction; a dead connection must not hide the first error."""
    try:
        db.session.rollback()
    except Exception:
        log.warning("rollback failed", exc_info=True)


def register(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError) -> Response:
        _rollback()
        response = error_response(STATUS_BY_CODE.get(exc.code, 400), exc.message, exc.errors)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        elif response.status_code == 503:  # a provider away (CAPTCHA): nothing was stored
            response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(status, _http_message(exc))
        # Allow, Retry-After, WWW-Authenticate...: all but the body's own headers.
        for name, value in exc.get_headers(request.environ):
            if name.lower() not in ("content-type", "content-length"):
                response.headers.add(name, value)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            # Sorted, as OPTIONS does, and without a method whose view answers 405 itself.
            response.headers["Allow"] = allowed_methods(request)
        return response

    @app.errorhandler(RateLimitExceeded)  # the dashboard's limits (Flask-Limiter)
    def rate_limited(exc: RateLimitExceeded) -> Response:
        response = http_error(exc)
        response.headers["Retry-After"] = str(_retry_after())
        return response

    @app.errorhandler(StorageUnavailable)
    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    def database_unavailable(exc: Exception) -> Response:
        # Nothing was acknowledged: the client may safely send again.
        log.error("database unavailable: %s", getattr(exc, "orig", None) or exc)
        _rollback()
        response = error_response(
            503,
            "The service cannot store submissions right now; please try again shortly.",
            database_failed=True,
        )
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(StorageError)
    def files_unavailable(exc: StorageError) -> Response:
        # The upload's files were removed (web/uploads.py); nothing was acknowledged.
        log.error("file storage unavailable: %s", exc)
        _rollback()
        response = error_response(
            503,
            "The service cannot store files right now; please try again shortly.",
            [FieldError("STORAGE_UNAVAILABLE", "The service cannot store files right now.")],
        )
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        _rollback()
        return error_response(500, "Something went wrong on our side. Please try again later.")


def _retry_after() -> int:
    """Seconds until the limit this request broke lets another through (at least 1)."""
    broken = limiter.current_limit
    if broken is None:
        return 60
    try:
        reset_at = broken.reset_at
    except Exception:  # the storage went away meanwhile: a minute is a fair guess
        log.warning("could not read the rate limit's window", exc_info=True)
        return 60
    # Never longer than the window itself (the storage's expiry may round up a second).
    window = broken.limit.get_expiry()
    return max(1, min(window, math.ceil(reset_at - time.time())))


def _http_message(exc: HTTPException) -> str:
    messages = {
        404: "There is nothing at this address.",
        405: f"{request.method} is not allowed here.",
        413: "The request is larger than this service accepts.",
        429: "Too many attempts: wait a little, then try again.",
    }
    return messages.get(exc.code or 500, exc.description or exc.name)
