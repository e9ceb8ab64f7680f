"""Whether a client wants JSON or an HTML page."""

from __future__ import annotations

from flask import Request


def wants_json(request: Request) -> bool:
    """JSON for XHR, for an Accept that ranks JSON above HTML, and for a JSON body unless
    Accept prefers HTML; an HTML page otherwise (what a browser's form post expects)."""
    if request.headers.get("X-Requested-With", "").lower() == "xmlhttprequest":
        return True
    accept = request.accept_mimetypes
    json_q, html_q = accept["application/json"], accept["text/html"]
    if json_q != html_q:
        return json_q > html_q
    return request.mimetype == "application/json" or request.mimetype.endswith("+json")
