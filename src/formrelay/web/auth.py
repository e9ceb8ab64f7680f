"""Accounts: register, confirm, log in and out, reset, sign-in links, the account page."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from ..db import begin_write, read_first
from ..extensions import db, limiter, login_manager
from ..models import User, utcnow
from ..services import accounts, passwords, sign_ins, tokens
from ..services.urls import local_path
from ..settings import get_settings
from .changes import apply
from .errors import error_response
from .inputs import (
    ChangeEmailInput,
    ChangePasswordInput,
    ConfirmInput,
    LoginInput,
    RegisterInput,
    ResetRequestInput,
    SetPasswordInput,
    TimezoneInput,
)
from .negotiation import wants_json
from .transactions import writes

bp = Blueprint("auth", __name__)

# Log-in and reset attempts (Flask-Limiter syntax), counted per client address and per
# account address; a failed log-in counts, a successful one does not. Above them: 429 with
# Retry-After. docs/dashboard.md ("Accounts") lists them.
LIMIT_PER_ADDRESS = "10/minute;100/hour"
LIMIT_PER_ACCOUNT = "5/minute;50/hour"

View = str | Response | tuple[str, int] | tuple[Response, int]


@login_manager.user_loader
def load_user(cookie_id: str) -> User | None:
    """The user whose sign-in a session or "Remember me" cookie names, while that sign-in
    lives and the user's session version is still the one it began with."""
    # "Last seen" is written only when this lookup opened the request's transaction (so that
    # nothing else of the request is committed early), in a writer's transaction of its own.
    first = not db.session().in_transaction()
    found = sign_ins.find(db.session(), cookie_id)
    if found is None:
        return None
    user = found.user
    if first and sign_ins.touch_due(found):
        _begin_writing()
        sign_ins.touch(db.session(), found)
        db.session.commit()
    user.sign_in_token = cookie_id.split(":", 2)[2]
    return user


def _begin_writing() -> None:
    """End the request's reads and begin a writer's transaction: on SQLite a transaction
    that read first could be refused the write (see db.begin_write)."""
    db.session.rollback()
    begin_write(db.session())


def _begin_sign_in(user: User, *, remember: bool = False) -> None:
    """Record this browser's sign-in as `user` (committed by the caller before login_user)."""
    agent = request.headers.get("User-Agent", "")
    user.sign_in_token = sign_ins.begin(db.session(), user, remembered=remember, user_agent=agent)


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path inside formrelay ("/forms?x=1"), as a browser reads it,
    else None (services/urls.py: never another host)."""
    return local_path(target)


def _account_key() -> str:
    """The rate-limit key of the account an attempt names (whether or not it exists)."""
    return "account:" + request.form.get("email", "").strip().lower()[:320]


def _refused(response: Response) -> bool:
    """Whether the attempt was refused for its credentials: a log-in the server failed to
    complete (a 503 while the database is away) is not counted against anyone."""
    return bool(g.get("credentials_refused"))


def _home() -> Response:
    return redirect(url_for("forms.index"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LIMIT_PER_ADDRESS, methods=["POST"], deduct_when=_refused)
@limiter.limit(LIMIT_PER_ACCOUNT, methods=["POST"], key_func=_account_key, deduct_when=_refused)
def login() -> View:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or url_for("forms.index"))
    form = LoginInput(next=request.args.get("next", ""))
    if form.validate_on_submit():
        session = db.session()
        # The hash is checked outside the write lock, which is taken only to record a
        # log-in (on SQLite it holds up every other writer of the machine meanwhile).
        read_first(session)
        user = accounts.find_user(session, form.email.data or "")
        checked = user.password_hash if user else None
        password = form.password.data or ""
        if user is not None and passwords.verify_password(checked, password) and user.is_active:
            stale = checked is not None and passwords.needs_rehash(checked)
            rehashed = passwords.hash_password(password) if stale else None
            session.commit()
            begin_write(session)
            if user.password_hash == checked and user.is_active:  # as checked, still
                user.password_hash = rehashed or user.password_hash
                user.last_login_at = utcnow()
                _begin_sign_in(user, remember=bool(form.remember.data))
                session.commit()
                login_user(user, remember=bool(form.remember.data))
                return redirect(safe_next(form.next.data) or url_for("forms.index"))
            session.rollback()
        g.credentials_refused = True
        flash("The e-mail address or password is not right.", "error")
    page = render_template(
        "auth/login.html", form=form, registration_open=get_settings().registration == "open"
    )
    return page, 200 if request.method == "GET" else 400


@bp.post("/logout")
@login_required
def logout() -> Response:
    if ConfirmInput().validate_on_submit():
        token = current_user.sign_in_token
        _begin_writing()
        sign_ins.end(db.session(), token)
        db.session.commit()
        logout_user()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


# -- registration and confirmation -----------------------------------------------------------
@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(LIMIT_PER_ADDRESS, methods=["POST"])
def register() -> View:
    settings = get_settings()
    if settings.registration != "open":
        return render_template("auth/register_closed.html", mode=settings.registration), 404
    if current_user.is_authenticated:
        return _home()
    form = RegisterInput()
    if form.validate_on_submit():
        email, password = form.email.data or "", form.password.data or ""
        if apply(lambda: accounts.register(db.session(), settings, email, password), form):
            # The same page whether the address was new or had an account already.
            return render_template("auth/check_inbox.html", email=email, what="register")
    status = 200 if request.method == "GET" else 400
    return render_template("auth/register.html", form=form), status


@bp.get("/confirm/<token>")
@writes
def confirm(token: str) -> View:
    session = db.session()
    try:
        claim = tokens.consume(session, get_settings(), tokens.CONFIRM, token)
        if claim.email != claim.user.email:
            raise tokens.TokenUsed("This link confirmed an address the account no longer has.")
    except tokens.TokenError as exc:
        return _bad_link(exc)
    accounts.mark_confirmed(claim.user)
    db.session.commit()
    flash(f"{claim.user.email} is confirmed. Thank you.", "info")
    if current_user.is_authenticated:
        return _home()
    return redirect(url_for("auth.login"))


@bp.post("/confirm/resend")
@login_required
def resend_confirmation() -> Response:
    if not ConfirmInput().validate_on_submit():
        return error_response(400, "The form had expired: please try again.")
    user: User = current_user._get_current_object()
    if user.confirmed_at is None:
        accounts.send_confirmation(db.session(), get_settings(), user)
        db.session.commit()
        flash(f"A new confirmation link is on its way to {user.email}.", "info")
    return redirect(safe_next(request.args.get("next")) or url_for("forms.index"))


# -- forgotten passwords and sign-in links -----------------------------------------------------
@bp.route("/reset", methods=["GET", "POST"])
@limiter.limit(LIMIT_PER_ADDRESS, methods=["POST"])
@limiter.limit(LIMIT_PER_ACCOUNT, methods=["POST"], key_func=_account_key)
def reset_request() -> View:
    form = ResetRequestInput()
    if form.validate_on_submit():
        email = form.email.data or ""
        accounts.request_reset(db.session(), get_settings(), email)
        db.session.commit()
        return render_template("auth/check_inbox.html", email=email, what="reset")
    status = 200 if request.method == "GET" else 400
    return render_template("auth/reset_request.html", form=form), status


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str) -> View:
    return _set_password(tokens.RESET, token, heading="Choose a new password")


@bp.route("/sign-in/<token>", methods=["GET", "POST"])
def sign_in(token: str) -> View:
    return _set_password(tokens.SIGN_IN, token, heading="Set your password")


@bp.route("/invitation/<token>", methods=["GET", "POST"])
def invitation(token: str) -> View:
    return _set_password(tokens.INVITE, token, heading="Welcome: set your password")


def _set_password(purpose: str, token: str, *, heading: str) -> View:
    """The page a reset, sign-in or invitation link opens: choose a password, and be signed
    in. Following the link proves the address, so it is confirmed too."""
    session, settings = db.session(), get_settings()
    try:
        claim = tokens.check(session, settings, purpose, token)
    except tokens.TokenError as exc:
        return _bad_link(exc)
    form = SetPasswordInput()
    if form.validate_on_submit():
        password = form.password.data or ""
        try:
            made = apply(lambda: _follow_link(purpose, token, password), form.password)
        except tokens.TokenError as exc:
            return _bad_link(exc)
        if made:
            logout_user()  # whoever was signed in here, the link's owner is now
            login_user(made.value)
            flash("Your password is set; you are logged in.", "info")
            return _home()
    status = 200 if request.method == "GET" else 400
    page = render_template("auth/set_password.html", form=form, heading=heading, user=claim.user)
    return page, status


def _follow_link(purpose: str, token: str, password: str) -> User:
    """Use up the link, give its owner `password` (raises InvalidInput saying what is wrong
    with it), and sign this browser in as them; returns the owner."""
    session = db.session()
    claim = tokens.consume(session, get_settings(), purpose, token)
    user = claim.user
    accounts.set_password(session, user, password)
    accounts.mark_confirmed(user)
    user.last_login_at = utcnow()
    if current_user.is_authenticated:  # whoever was signed in here
        sign_ins.end(session, current_user.sign_in_token)
    _begin_sign_in(user)
    return user


def _bad_link(exc: tokens.TokenError) -> View:
    """A friendly page (or JSON) saying why a link cannot be followed: 400 for a link that
    is not one of ours, 410 for one that has expired or been used."""
    db.session.rollback()
    if wants_json(request):
        return error_response(exc.status, exc.message, exc.errors)
    return render_template("auth/bad_link.html", error=exc), exc.status


# -- the account page --------------------------------------------------------------------------
def _account_inputs() -> tuple[ChangePasswordInput, ChangeEmailInput, TimezoneInput]:
    return (
        ChangePasswordInput(prefix="pw"),
        ChangeEmailInput(prefix="em"),
        TimezoneInput(prefix="tz", data={"timezone": current_user.timezone}),
    )


def _account_page(
    inputs: tuple[ChangePasswordInput, ChangeEmailInput, TimezoneInput], status: int = 200
) -> tuple[str, int]:
    password, email, zone = inputs
    page = render_template(
        "auth/account.html",
        password_form=password,
        email_form=email,
        timezone_form=zone,
        zones=accounts.timezone_names(),
        sign_ins=sign_ins.active(db.session(), current_user._get_current_object()),
        this_sign_in=sign_ins.digest(current_user.sign_in_token),
    )
    return page, status


@bp.get("/account")
@login_required
def account() -> View:
    return _account_page(_account_inputs())


@bp.post("/account/password")
@login_required
def change_password() -> View:
    inputs = _account_inputs()
    form = inputs[0]
    if form.validate_on_submit():
        user: User = current_user._get_current_object()
        remember = bool(request.cookies.get("remember_token"))
        if not passwords.verify_password(user.password_hash, form.current.data or ""):
            form.current.errors = ["The current password is not right."]
            return _account_page(inputs, 400)
        password = form.password.data or ""

        def change() -> None:
            accounts.set_password(db.session(), user, password)
            # Every sign-in ended with the new password; this browser begins a new one.
            _begin_sign_in(user, remember=remember)

        if apply(change, form.password):
            login_user(user, remember=remember)
            flash("Your password is changed; other sessions are logged out.", "info")
            return redirect(url_for("auth.account"))
    return _account_page(inputs, 400)


@bp.post("/account/logout-everywhere")
@login_required
def logout_everywhere() -> Response:
    if not ConfirmInput().validate_on_submit():
        return error_response(400, "The form had expired: please try again.")
    user: User = current_user._get_current_object()
    _begin_writing()
    sign_ins.end_all(db.session(), user)
    db.session.commit()
    logout_user()
    flash("You are logged out everywhere: every browser must log in again.", "info")
    return redirect(url_for("auth.login"))


@bp.post("/account/email")
@login_required
def change_email() -> View:
    inputs = _account_inputs()
    form = inputs[1]
    if form.validate_on_submit():
        user: User = current_user._get_current_object()
        if not passwords.verify_password(user.password_hash, form.password.data or ""):
            form.password.errors = ["The current password is not right."]
        else:
            email = form.email.data or ""
            made = apply(
                lambda: accounts.request_email_change(db.session(), get_settings(), user, email),
                form.email,
            )
            if made:
                flash(
                    f"A link is on its way to {made.value}; the change happens when it is "
                    f"followed. Until then the account keeps {user.email}.",
                    "info",
                )
                return redirect(url_for("auth.account"))
    return _account_page(inputs, 400)


@bp.get("/account/email/<token>")
@writes
def confirm_email_change(token: str) -> View:
    session = db.session()
    try:
        claim = tokens.consume(session, get_settings(), tokens.CHANGE_EMAIL, token)
        user = accounts.apply_email_change(session, claim)
    except tokens.TokenError as exc:
        return _bad_link(exc)
    db.session.commit()
    flash(f"Your account's address is now {user.email}.", "info")
    if current_user.is_authenticated:
        return redirect(url_for("auth.account"))
    return redirect(url_for("auth.login"))


@bp.post("/account/timezone")
@login_required
def change_timezone() -> View:
    inputs = _account_inputs()
    form = inputs[2]
    if form.validate_on_submit():
        zone = form.timezone.data or ""
        if apply(lambda: accounts.set_timezone(db.session(), current_user, zone), form.timezone):
            flash(f"Times are shown in {current_user.timezone} now.", "info")
            return redirect(url_for("auth.account"))
    return _account_page(inputs, 400)
