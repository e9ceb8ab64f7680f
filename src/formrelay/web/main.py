"""formrelay's own pages: the front page, the thanks page, and formrelay.js for other sites."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, render_template, request

from ..services.urls import http_url
from ..settings import get_settings

bp = Blueprint("main", __name__)
SCRIPT = Path(__file__).resolve().parent.parent / "static" / "public" / "formrelay.js"
STAMP_PLACEHOLDER = '"__FORMRELAY_PAGE_LOAD__"'


@bp.get("/")
def index() -> str:
    return render_template("index.html", base_url=get_settings().base_url)


@bp.get("/thanks")
def thanks() -> str:
    return render_template("thanks.html", back=http_url(request.args.get("back")) or "")


@bp.get("/formrelay.js")
def script() -> Response:
    """formrelay.js for the pages that carry forms, with the page-load time signed in.

    Never cached: each page load fetches its own copy, whose signed time is when the page
    was loaded (a form's minimum time before submitting is measured from it).
    """
    from .screening import page_load_stamp

    body = _script_source().replace(STAMP_PLACEHOLDER, json.dumps(page_load_stamp()), 1)
    response = Response(body, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-store"
    # Other sites load it with <script src>; with crossorigin they need this too.
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@cache
def _script_source() -> str:
    return SCRIPT.read_text(encoding="utf-8")
