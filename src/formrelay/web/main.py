"""formrelay's own pages: the front page and the thanks page."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from ..services.urls import http_url
from ..settings import get_settings

bp = Blueprint("main", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html", base_url=get_settings().base_url)


@bp.get("/thanks")
def thanks() -> str:
    return render_template("thanks.html", back=http_url(request.args.get("back")) or "")
