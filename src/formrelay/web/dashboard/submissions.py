"""Submissions: per form and across forms, search, detail, spam, export."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("submissions", __name__)
