"""Accounts: log in and out (registration, confirmation and resets grow here)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..extensions import db, login_manager
from ..models import User, utcnow
from ..services import accounts, passwords
from .inputs import ConfirmInput, LoginInput

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user a session names, if its session version is still the user's."""
    user_id, _, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.scalar(select(User).where(User.id == int(user_id)))
    if user is None or user.session_version != int(version) or user.disabled:
        return None
    return user


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path inside formrelay ("/forms?x=1"), else None: never another
    host, never a scheme-relative "//host" or "/\\host" a browser would follow away."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(c in target for c in "\r\n\t\\"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or url_for("forms.index"))
    form = LoginInput(next=request.args.get("next", ""))
    if form.validate_on_submit():
        user = accounts.find_user(db.session(), form.email.data or "")
        ok = passwords.verify_password(
            user.password_hash if user else None, form.password.data or ""
        )
        if user is not None and ok and user.is_active:
            user.last_login_at = utcnow()
            db.session.commit()
            login_user(user, remember=bool(form.remember.data))
            return redirect(safe_next(form.next.data) or url_for("forms.index"))
        flash("The e-mail address or password is not right.", "error")
    return render_template("auth/login.html", form=form), 200 if request.method == "GET" else 400


@bp.post("/logout")
@login_required
def logout() -> Response:
    if ConfirmInput().validate_on_submit():
        logout_user()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
