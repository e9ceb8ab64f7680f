"""Admin: users, every form, and the status of the outbox and its workers."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__)
