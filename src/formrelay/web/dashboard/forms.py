"""The owner's forms: list, create, settings, set-up."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from ...extensions import db
from ...services import permissions

bp = Blueprint("forms", __name__)


@bp.get("/forms")
@login_required
def index() -> str:
    forms = db.session.scalars(permissions.owned_forms(current_user).order_by("id")).all()
    return render_template("dashboard/forms.html", forms=forms)
