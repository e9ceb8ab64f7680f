"""Health checks for platforms and monitors: JSON, no authentication, nothing secret."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from ..db import DATABASE_AWAY
from ..extensions import db
from ..models import utcnow
from ..services.workers import outbox_status
from ..settings import get_settings

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and answering (a platform's liveness check)."""
    return jsonify({"ok": True})


@bp.get("/readyz")
def readyz() -> Response:
    """Whether submissions are being stored and delivered: the database answers, a worker is
    alive, and no delivery has waited past FORMRELAY_READY_MAX_DELAY_SECONDS. 503 otherwise."""
    settings = get_settings()
    checks: dict[str, dict[str, Any]] = {}
    try:
        session = db.session()
        session.execute(text("SELECT 1"))
        now = utcnow()
        status = outbox_status(session, now=now, grace_seconds=settings.worker_grace_seconds)
    except DATABASE_AWAY:
        db.session.rollback()
        checks["database"] = {"ok": False, "error": "the database cannot be reached"}
    else:
        checks["database"] = {"ok": True}
        alive = len(status.alive)
        checks["workers"] = {"ok": alive > 0, "alive": alive}
        age = status.oldest_due_age(now)
        seconds = None if age is None else round(age.total_seconds(), 1)
        checks["outbox"] = {
            "ok": seconds is None or seconds <= settings.ready_max_delay_seconds,
            "due": status.due,
            "sending": status.sending,
            "oldest_due_seconds": seconds,
        }
    ok = all(check["ok"] for check in checks.values())
    response = jsonify({"ok": ok, "checks": checks})
    response.status_code = 200 if ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response
