"""What every template may use: the viewer's local time, and which pages exist."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app
from flask_login import current_user

from ..services.attachments import format_size


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def viewer_zone() -> ZoneInfo:
    """The signed-in user's time zone; UTC for everyone else."""
    name = getattr(current_user, "timezone", None) if current_user else None
    return _zone(name or "UTC")


def localtime(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if moment is None:
        return ""
    return moment.astimezone(viewer_zone()).strftime(fmt)


def init_app(app: Flask) -> None:
    app.add_template_filter(localtime, "localtime")
    app.add_template_filter(format_size, "filesize")

    @app.context_processor
    def pages() -> dict[str, object]:
        # Lets the layout link only to pages that exist (the nav grows with the features).
        return {"url_rules": current_app.view_functions}
