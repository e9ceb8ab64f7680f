"""Admin: users, every form, and the status of the outbox and its workers.

Every page here is for admins only; for anyone else it does not exist (404), and a visitor
who is not signed in is sent to log in first. A change that is refused (the last admin
demoting themselves, an address that has an account) shows the page again with the reason
and the status that says why (400 or 409); a change made redirects (303) to the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import cast

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from ...db import begin_write
from ...delivery import CheckResult, check_backend
from ...extensions import db
from ...models import User, utcnow
from ...services import accounts, admin, forms, permissions, suppressions
from ...services.errors import DomainError
from ...settings import get_settings
from ..changes import apply
from ..inputs import ConfirmInput, InviteInput, RoleInput, SuppressionInput
from ..ses_info import ses_info

bp = Blueprint("admin", __name__, url_prefix="/admin")

Page = str | tuple[str, int] | Response
CHECK_TIMEOUT_SECONDS = 10.0


def _actor() -> User:
    return cast(User, current_user._get_current_object())


@bp.before_request
@login_required
def admins_only() -> None:
    # Flask-Login lets OPTIONS through signed out: Flask's automatic answer lists the
    # address's methods, as on every other page, and names nothing an admin sees.
    if not current_user.is_authenticated:
        return
    permissions.require_admin(_actor())


# -- status --------------------------------------------------------------------------------------
@bp.get("")
def index() -> Page:
    return _status_page()


@bp.post("/check-mail")
def check_mail() -> Page:
    """Connect to the configured mail backend without sending, and show what it said."""
    # CSRFProtect has already refused a POST without its token (400).
    settings = get_settings()
    # The check waits in a web request: never as long as a worker may wait for a send
    # (a front server or gunicorn gives up on a request after about 30 s).
    timeout = min(settings.mail_timeout, CHECK_TIMEOUT_SECONDS)
    return _status_page(check_backend("email", replace(settings, mail_timeout=timeout)))


def _status_page(check: CheckResult | None = None) -> Page:
    settings = get_settings()
    status = admin.system_status(
        db.session(), _actor(), now=utcnow(), grace_seconds=settings.worker_grace_seconds
    )
    age = status.outbox.oldest_due_age(status.now)
    info = ses_info()
    ses = None
    if info is not None:
        from ...services.ses_status import ses_overview  # boto3 only where SES is used

        ses = ses_overview(
            db.session(), settings, info.client, now=status.now, checker=info.checker
        )
    return render_template(
        "dashboard/admin.html",
        status=status,
        ses=ses,
        suppressed=suppressions.list_suppressions(db.session(), actor=_actor(), limit=5),
        suppressed_total=suppressions.count_suppressions(db.session()),
        oldest_wait=_duration(age) if age is not None else None,
        mail_backend=settings.mail_backend,
        mail_target=_mail_target(),
        check=check,
    )


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _mail_target() -> str:
    """Where the mail backend sends, as an operator recognises it (no secrets)."""
    s = get_settings()
    if s.mail_backend == "smtp":
        security = " (implicit TLS)" if s.mail_use_ssl else " (STARTTLS)" if s.mail_use_tls else ""
        login = f", login {s.mail_username}" if s.mail_username else ", no login"
        return f"{s.mail_server}:{s.mail_port}{security}{login}"
    if s.mail_backend == "ses":
        endpoint = f", endpoint {s.aws_endpoint_url}" if s.aws_endpoint_url else ""
        return f"region {s.aws_region}{endpoint}"
    return "standard output of the worker"


# -- users ---------------------------------------------------------------------------------------
@bp.get("/users")
def users() -> Page:
    return _users_page(InviteInput())


def _users_page(invite: InviteInput, status: int = 200) -> Page:
    rows = admin.list_users(db.session(), _actor())
    html = render_template("dashboard/admin_users.html", rows=rows, invite=invite, me=_actor())
    return html, status


@bp.post("/users/invite")
def invite() -> Page:
    form = InviteInput()
    if not form.validate_on_submit():
        return _users_page(form, 400)
    email, as_admin = form.email.data or "", bool(form.admin.data)
    invited = apply(
        lambda: accounts.invite_user(db.session(), get_settings(), _actor(), email, admin=as_admin),
        form.email,
        refuse=DomainError,
    )
    if not invited:
        return _users_page(form, invited.status)
    flash(
        f"Invited {invited.value.email}: an e-mail with a link to choose a password is on its way.",
        "success",
    )
    return redirect(url_for("admin.users"), 303)


@bp.post("/users/<int:user_id>/role")
def set_role(user_id: int) -> Page:
    form = RoleInput()
    user = admin.load_user(db.session(), _actor(), user_id)
    if not form.validate_on_submit():
        flash(" ".join(form.role.errors) or "Choose admin or member.", "error")
        return _users_page(InviteInput(formdata=None), 400)
    role = form.role.data or ""
    return _change(
        lambda: accounts.set_role(db.session(), _actor(), user, role),
        f"{user.email} is now {'an admin' if role == 'admin' else 'a member'}.",
    )


@bp.post("/users/<int:user_id>/disable")
def disable_user(user_id: int) -> Page:
    user = admin.load_user(db.session(), _actor(), user_id)
    return _change(
        lambda: accounts.set_disabled(db.session(), _actor(), user, True),
        f"{user.email} is disabled: they cannot log in, and their sessions have ended.",
    )


@bp.post("/users/<int:user_id>/enable")
def enable_user(user_id: int) -> Page:
    user = admin.load_user(db.session(), _actor(), user_id)
    return _change(
        lambda: accounts.set_disabled(db.session(), _actor(), user, False),
        f"{user.email} is enabled and can log in again.",
    )


def _change(change: Callable[[], object], done: str) -> Page:
    """Make a change to a user and go back to the list, or show why it was refused."""
    made = apply(change, None, refuse=DomainError)
    if not made:
        return _users_page(InviteInput(formdata=None), made.status)
    flash(done, "success")
    return redirect(url_for("admin.users"), 303)


@bp.route("/users/<int:user_id>/delete", methods=["GET", "POST"])
def delete_user(user_id: int) -> Page:
    """A confirmation page (GET) saying what goes with the user; deleting (POST)."""
    session = db.session()
    user = admin.load_user(session, _actor(), user_id)
    holdings = admin.user_holdings(session, _actor(), user)
    form = ConfirmInput()
    if form.validate_on_submit():
        made = apply(
            lambda: accounts.delete_user(session, _actor(), user), None, refuse=DomainError
        )
        if not made:
            html = render_template(
                "dashboard/admin_user_delete.html", user=user, holdings=holdings, form=form
            )
            return html, made.status
        deleted = made.value
        flash(
            f"Deleted {deleted.email} with {_count(deleted.forms, 'form')} and "
            f"{_count(deleted.submissions, 'submission')}.",
            "success",
        )
        return redirect(url_for("admin.users"), 303)
    return render_template(
        "dashboard/admin_user_delete.html", user=user, holdings=holdings, form=form
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- forms ---------------------------------------------------------------------------------------
@bp.get("/forms")
def all_forms() -> Page:
    rows = admin.list_forms(db.session(), _actor())
    return render_template("dashboard/admin_forms.html", rows=rows)


@bp.post("/forms/<key>/disable")
def disable_form(key: str) -> Page:
    return _set_form_enabled(key, False)


@bp.post("/forms/<key>/enable")
def enable_form(key: str) -> Page:
    return _set_form_enabled(key, True)


def _set_form_enabled(key: str, enabled: bool) -> Page:
    session = db.session()
    form = permissions.load_form(session, _actor(), key)
    forms.set_enabled(session, form, enabled)
    db.session.commit()
    if enabled:
        flash(f"{form.name} ({form.key}) is enabled: it accepts submissions again.", "success")
    else:
        flash(f"{form.name} ({form.key}) is disabled: it refuses submissions.", "success")
    return redirect(url_for("admin.all_forms"), 303)


# -- the suppression list ------------------------------------------------------------------------
def _writer() -> Session:
    """The request's session as a writer from the start: signing in read the user already,
    and on SQLite a reading transaction could be refused the write (see db.begin_write)."""
    session = db.session()
    session.commit()
    begin_write(session)
    return session


@bp.get("/suppressions")
def suppressions_page() -> Page:
    return _suppressions_page(SuppressionInput())


def _suppressions_page(form_input: SuppressionInput, status: int = 200) -> Page:
    rows = suppressions.list_suppressions(db.session(), actor=_actor())
    html = render_template("dashboard/admin_suppressions.html", rows=rows, input=form_input)
    return html, status


@bp.post("/suppressions")
def add_suppression() -> Page:
    form_input = SuppressionInput()
    if not form_input.validate_on_submit():
        return _suppressions_page(form_input, 400)
    session = _writer()
    address, detail = form_input.address.data or "", form_input.detail.data or None
    made = apply(
        lambda: suppressions.suppress(
            session, address, reason="manual", source="admin", detail=detail, actor=_actor()
        ),
        form_input.address,
        refuse=DomainError,
    )
    if not made:
        return _suppressions_page(form_input, made.status)
    entry, ended = made.value
    noun = "delivery" if ended == 1 else "deliveries"
    flash(
        f"{entry.address} is suppressed: nothing more is sent to it"
        + (f" ({ended} waiting {noun} ended)." if ended else "."),
        "success",
    )
    return redirect(url_for("admin.suppressions_page"), 303)


@bp.post("/suppressions/<int:suppression_id>/remove")
def remove_suppression(suppression_id: int) -> Page:
    session = _writer()
    entry = suppressions.load_suppression(session, _actor(), suppression_id)
    address = entry.address
    suppressions.unsuppress(session, address, actor=_actor())
    db.session.commit()
    flash(f"{address} is off the suppression list: mail reaches it again.", "success")
    return redirect(url_for("admin.suppressions_page"), 303)
