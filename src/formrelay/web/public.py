"""The public endpoint that HTML forms post to: POST /f/<key> (Formspree's wire protocol)."""

from __future__ import annotations

from contextlib import suppress
from urllib.parse import urlencode

import orjson
from flask import Blueprint, Response, jsonify, redirect, render_template, request
from werkzeug.exceptions import ClientDisconnected

from ..extensions import db
from ..ingest import group_commit
from ..services.errors import FormDisabled, SubmissionRejected
from ..services.rate_limits import Counted
from ..services.submissions import SubmissionMeta, check_form
from ..services.urls import http_url
from ..settings import get_settings
from . import fastpath, screening
from .negotiation import allowed_methods, answers_405, wants_json
from .payload import incomplete_body, parse_payload
from .uploads import ReceivedFiles, attach_files, is_multipart, receive_multipart

bp = Blueprint("public", __name__)


# OPTIONS has its own view (below) on every rule here, so that its Allow lists the methods
# sorted, as the 405s do; cross_origin adds a preflight's answer to that view's response.
@bp.post("/f/<key>", provide_automatic_options=False)
@bp.post("/p/<project>/f/<key>", provide_automatic_options=False)  # with a project id
def submit(key: str, project: str | None = None) -> Response:
    # Every post counts in its rate limits, a refused one too, and a limit reached answers
    # 429 whatever else the post got wrong. A post with files is counted before they are
    # received (a flood costs little); any other with its batch, by group commit, in one
    # round trip for the batch; one refused here, here.
    limits: Counted | None = screening.limits_of(key)
    multipart = is_multipart(request.content_type)
    if multipart and limits is not None:
        screening.count_now(limits)
        limits = None  # counted
    config = get_settings()
    received: ReceivedFiles | None = None
    try:
        if multipart:  # files (if any) streamed to storage
            payload, received = receive_multipart(request, key, config)
        else:
            body = _read_body(config.max_body_bytes)
            payload = parse_payload(request.content_type, body, max_fields=config.max_fields)
        has_files = received is not None and bool(received.files)
        prepared = screening.prepare(key, payload.fields, _meta(), has_files=has_files)
    except SubmissionRejected:
        if received is not None:
            received.discard()
        if limits is not None:
            screening.count_now(limits)
        # A mistyped or disabled form matters more than the fields: say that first. The
        # success path skips this query; group commit checks the form in its transaction.
        check_form(db.session(), key)
        raise
    except Exception:  # a body too large, cut, or gone: it counts too
        if limits is not None:
            screening.count_now(limits)
        raise
    # Returns once the submission and its deliveries are committed, together: before any 2xx.
    # Its files are removed if that fails; spam keeps them, as any submission does.
    with attach_files(received, prepared) as prepared:
        stored = group_commit().accept(key, prepared, limits)
    # A form's redirect saved before formrelay read URLs as browsers do is sent as one reads it.
    next_url = http_url(stored.next_url) or _thanks_url()
    if wants_json(request):
        # orjson, not jsonify: a tenth of the answer's cost, the same JSON to a client.
        body = orjson.dumps({"ok": True, "next": next_url, "id": stored.id})
        return Response(body, mimetype="application/json")
    return redirect(next_url, code=303)  # type: ignore[return-value]


@bp.get("/f/<key>", provide_automatic_options=False)
@bp.get("/p/<project>/f/<key>", provide_automatic_options=False)
@answers_405
def explain(key: str, project: str | None = None) -> Response:
    """A form endpoint opened in a browser: say how to use it (405), or that there is no
    such form (404 FORM_NOT_FOUND, as a post to it would say)."""
    # A disabled form exists: how to send to it is still true, once it is enabled again.
    with suppress(FormDisabled):
        check_form(db.session(), key)
    endpoint = get_settings().base_url + request.path
    if wants_json(request):
        response = jsonify(
            {
                "ok": False,
                "error": "Send the form with POST.",
                "errors": [{"code": "METHOD_NOT_ALLOWED", "message": "Send the form with POST."}],
            }
        )
    else:
        response = Response(render_template("form_endpoint.html", endpoint=endpoint))
    response.status_code = 405
    # The same list as OPTIONS and a 405 for any other method: POST and OPTIONS.
    response.headers["Allow"] = allowed_methods(request)
    return response


@bp.route("/f/<key>", methods=["OPTIONS"])
@bp.route("/p/<project>/f/<key>", methods=["OPTIONS"])
def options(key: str, project: str | None = None) -> Response:
    """The methods this address answers (and, through cross_origin, a CORS preflight's answer)."""
    return Response(headers={"Allow": allowed_methods(request)})


# CORS: any site's page may post here, without credentials (no cookie of ours is needed).
# These few lines replace flask-cors, whose after_request hook matched its resources and
# built its headers for 9% of a submission's time (cProfile); the answers are the same.
CORS_PATHS = ("/f/", "/p/")
CORS_HEADERS = (
    "accept",
    "content-type",
    "formspree-client",
    "formspree-session-data",
    "x-requested-with",
)
CORS_MAX_AGE = "86400"


def cross_origin(response: Response) -> Response:
    """The CORS headers of the public endpoint's answers (an app-wide after_request: the
    405s and 404s under its paths carry them too, so that a page's script can read them).
    Read from the WSGI environ: the request's parsed views of it cost more than this."""
    environ = request.environ
    if not environ.get("PATH_INFO", "").startswith(CORS_PATHS):
        return response
    headers = response.headers
    origin = environ.get("HTTP_ORIGIN")
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
        headers.add("Vary", "Origin")
    else:
        headers["Access-Control-Allow-Origin"] = "*"
    wanted = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "").upper()
    if environ.get("REQUEST_METHOD") == "OPTIONS" and wanted == "POST":  # a preflight
        asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
        allowed = sorted({h.strip().lower() for h in asked.split(",")} & set(CORS_HEADERS))
        if allowed:
            headers["Access-Control-Allow-Headers"] = ", ".join(allowed)
        headers["Access-Control-Allow-Methods"] = "POST"
        headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return response


def _read_body(limit: int) -> bytes:
    """The whole request body, refused past `limit` bytes whether or not Content-Length
    is sent, and refused when it ends before its end (INCOMPLETE_BODY).

    A client that half-closes the connection in the middle of its body must not have the
    part it sent stored as if it were all. Read until Content-Length bytes have come or
    the stream ends: werkzeug's LimitedStream raises ClientDisconnected at a short end,
    granian ends the stream quietly (so the length is compared), and werkzeug's dechunker
    (under `formrelay serve`) raises OSError at a malformed or missing chunk header.
    Granian also ends a chunked body cut short quietly, with nothing to tell it from a
    whole one: the JSON and multipart parsers still see the missing end.
    """
    too_large = SubmissionRejected(
        "PAYLOAD_TOO_LARGE", f"The submission is larger than the {limit // 1024} KB accepted."
    )
    expected = request.content_length
    if expected is not None and expected > limit:
        raise too_large
    wanted = limit + 1 if expected is None else expected
    chunks: list[bytes] = []
    received = 0
    try:
        while received < wanted:
            chunk = request.stream.read(wanted - received)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
    except (ClientDisconnected, OSError, ValueError):
        raise incomplete_body(expected) from None
    body = b"".join(chunks)
    if len(body) > limit:
        raise too_large
    if expected is not None and len(body) < expected:
        raise incomplete_body(expected)
    return body


def _meta() -> SubmissionMeta:
    def header(name: str) -> str | None:
        value = request.headers.get(name)
        return value.replace("\x00", "") if value else value  # PostgreSQL text holds no NUL

    return SubmissionMeta(
        remote_addr=request.remote_addr,
        user_agent=header("User-Agent"),
        referrer=header("Referer"),
        origin=header("Origin"),
    )


def _thanks_url() -> str:
    """formrelay's own thanks page, linking back to the page the form was on."""
    path = fastpath.thanks_path()
    referrer = http_url(request.headers.get("Referer"))
    if referrer:
        path += "?" + urlencode({"back": referrer})
    return get_settings().base_url + path
