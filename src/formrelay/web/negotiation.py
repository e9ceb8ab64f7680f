"""What a client may ask of an address, and whether it wants the answer as JSON or HTML."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Request, current_app
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException

JSON = ("application", "json")
HTML = ("text", "html")

# How specifically an Accept range names a type: "*/*" < "text/*" < "text/html".
ANY, TYPE_WILDCARD, NAMED = 0, 1, 2


def wants_json(request: Request) -> bool:
    """Whether the answer to `request` is JSON rather than an HTML page (or a redirect).

    JSON for `X-Requested-With: XMLHttpRequest`. Otherwise the Accept header decides: the
    type of higher quality wins, each type taking the quality of the most specific range
    that matches it (RFC 9110, section 12.5.1). At equal quality above zero, a type the
    client names beats one it gets through `application/*` or `text/*`, and either beats
    `*/*` alone: `application/json, text/plain, */*` (axios) wants JSON, a browser's
    `text/html, ..., */*;q=0.8` wants HTML. When that still ties (`*/*`, no Accept, both
    named alike, or neither acceptable), the body decides: JSON for a JSON body, HTML for a
    form's body, as curl, fetch and HTML forms expect.
    """
    headers = request.headers
    if headers.get("X-Requested-With", "").lower() == "xmlhttprequest":
        return True
    if headers.get("Accept") == "application/json":  # what most API clients send: at once
        return True
    accept = request.accept_mimetypes
    json_q, json_specificity = _preference(accept, JSON)
    html_q, html_specificity = _preference(accept, HTML)
    if json_q != html_q:
        return json_q > html_q
    if json_q > 0 and json_specificity != html_specificity:
        return json_specificity > html_specificity
    return request.mimetype == "application/json" or request.mimetype.endswith("+json")


def _preference(accept: MIMEAccept, wanted: tuple[str, str]) -> tuple[float, int]:
    """(quality, specificity) of the most specific Accept range that matches `wanted`;
    (0, -1) when none does. Parameters (`;charset=utf-8`) do not narrow a range here:
    `application/json; charset=utf-8` names JSON as much as `application/json` does."""
    best: tuple[int, float] = (-1, 0.0)
    for value, quality in accept:
        media_range = value.split(";", 1)[0].strip().lower()
        kind, slash, subtype = media_range.partition("/")
        if not slash:
            continue  # not a media range: ignored, as werkzeug ignores a bad q
        if (kind, subtype) == wanted:
            specificity = NAMED
        elif kind == wanted[0] and subtype == "*":
            specificity = TYPE_WILDCARD
        elif (kind, subtype) == ("*", "*"):
            specificity = ANY
        else:
            continue
        # A more specific range overrides a broader one; among equals, the best quality.
        best = max(best, (specificity, quality))
    specificity, quality = best
    return quality, specificity


# Marks a view that answers every request with 405 (it only explains what to do instead).
ANSWERS_405 = "formrelay_answers_405"

View = TypeVar("View", bound=Callable[..., Any])


def answers_405(view: View) -> View:
    """Mark `view` as one whose method is not allowed: Allow headers leave that method out."""
    setattr(view, ANSWERS_405, True)
    return view


def allowed_methods(request: Request) -> str:
    """The Allow header for the address of `request`: every method the router has a view
    for, except views marked with `answers_405`, sorted (the router returns them in a set's
    order, which varies between processes)."""
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return ""
    methods = set()
    for method in adapter.allowed_methods():
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:  # a redirect or a refusal: not this address's own view
            continue
        view = current_app.view_functions.get(str(endpoint))
        if not getattr(view, ANSWERS_405, False):
            methods.add(method)
    return ", ".join(sorted(methods))
