"""formrelay's own pages: the front page and the thanks page."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, render_template, request

from . import settings

bp = Blueprint("main", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html", base_url=settings().base_url)


@bp.get("/thanks")
def thanks() -> str:
    back = request.args.get("back", "")
    if urlsplit(back).scheme not in ("http", "https"):
        back = ""
    return render_template("thanks.html", back=back)
