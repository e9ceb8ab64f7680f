"""The owner's forms: the list with its figures, create, settings, set-up, disable, delete.

Every page loads its form through services.permissions.load_form: another user's form is a
404, as is a key that exists nowhere. Changes are made by services.forms; the view commits
once, and the mail a change queues leaves with that commit.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from ...extensions import db, limiter
from ...models import Form, Recipient, User
from ...services import forms, permissions, spam, stats, suppressions
from ...services.errors import Conflict, InvalidInput
from ...services.submissions import SPECIAL_FIELDS
from ...settings import get_settings
from ..auth import safe_next
from ..changes import apply
from ..inputs import (
    FormSettingsInput,
    NewFormInput,
    RecipientInput,
    SpamSettingsInput,
    UploadSettingsInput,
)
from ..ses_info import SANDBOX_ADVICE, ses_info

bp = Blueprint("forms", __name__)

# What each special field does, for the set-up tab (services/submissions.py acts on them).
SPECIAL_FIELD_HELP = {
    "_replyto": "The address a reply to the notification goes to. Without it, the first "
    "field named email is used.",
    "_next": "Where the visitor goes after submitting: an http(s) URL, or a path resolved "
    "against the page the form is on. Overrides the form's default redirect.",
    "_subject": "The subject of the notification, instead of the form's own.",
    "_cc": "Up to 5 addresses, comma-separated, that get a copy of the notification. "
    "Only when the form allows it (Spam and abuse settings): otherwise refused with "
    "CC_NOT_ALLOWED, so that nobody can use the form to mail others.",
    "_gotcha": "The honeypot: keep it hidden. A bot that fills it gets a normal answer, "
    "and the submission is stored as spam and sends nothing. The form can name another "
    "field as its honeypot too.",
    "_formrelay": "Added by formrelay.js: the signed time the page was loaded, for the "
    "form's minimum time before submitting. Never shown as data.",
    "_language": "Accepted for Formspree compatibility and ignored; never shown as data.",
    "_template": "Accepted for Formspree compatibility and ignored; never shown as data.",
    "_format": "Accepted for Formspree compatibility and ignored; never shown as data.",
}
assert set(SPECIAL_FIELD_HELP) == SPECIAL_FIELDS, "every special field needs its help text"


def endpoint_url(form: Form) -> str:
    return f"{get_settings().base_url}/f/{form.key}"


@bp.get("/forms")
@login_required
def index() -> str:
    session = db.session()
    listed = session.scalars(permissions.owned_forms(current_user).order_by(Form.id)).all()
    figures = stats.form_stats(session, [f.id for f in listed])
    rows = [
        {
            "form": f,
            "endpoint": endpoint_url(f),
            "stats": figures[f.id],
            "points": stats.sparkline_points(figures[f.id].daily),
        }
        for f in listed
    ]
    return render_template("dashboard/forms.html", rows=rows, days=stats.DAYS)


@bp.route("/forms/new", methods=["GET", "POST"])
@login_required
def new() -> str | Response | tuple[str, int]:
    user = current_user._get_current_object()
    entry = NewFormInput(recipient=user.email) if request.method == "GET" else NewFormInput()
    if entry.validate_on_submit():
        created = apply(lambda: _create_form(user, entry), entry)
        if created:
            form, recipient = created.value
            flash(f"Form {form.name} created.", "success")
            if not recipient.verified:
                flash(_pending_message(recipient.email), "info")
            return redirect(url_for("forms.setup", key=form.key))
    status = 200 if request.method == "GET" else 400
    return render_template("dashboard/form_new.html", input=entry), status


def _create_form(owner: User, entry: NewFormInput) -> tuple[Form, Recipient]:
    """A new form with its first recipient (verified at once when it is the owner's own
    confirmed address)."""
    session = db.session()
    form = forms.create_form(session, owner, name=entry.name.data or "", recipients=[])
    recipient = forms.add_recipient(
        session, form, entry.recipient.data or "", base_url=get_settings().base_url
    )
    return form, recipient


@bp.route("/forms/<key>/settings", methods=["GET", "POST"])
@login_required
def settings(key: str) -> str | Response | tuple[str, int]:
    session = db.session()
    form = permissions.load_form(session, current_user, key)
    entry = FormSettingsInput(obj=form)  # the request's values when posted
    if entry.validate_on_submit():
        changes = forms.FormChanges(
            name=entry.name.data or "",
            redirect_url=(entry.redirect_url.data or "").strip(),
            subject=entry.subject.data or "",
            store_only=bool(entry.store_only.data),
        )
        saved = apply(lambda: forms.update_form(session, form, changes), entry)
        if saved:
            flash("Settings saved." if saved.value else "Nothing changed.", "success")
            return redirect(url_for("forms.settings", key=form.key))
    status = 200 if request.method == "GET" else 400
    return _settings_page(form, entry, RecipientInput(formdata=None)), status


@bp.post("/forms/<key>/uploads")
@login_required
def uploads(key: str) -> str | Response | tuple[str, int]:
    """The settings page's File uploads section."""
    session = db.session()
    form = permissions.load_form(session, current_user, key)
    entry = UploadSettingsInput()
    if entry.validate_on_submit():
        changes = forms.FormChanges(
            files_enabled=bool(entry.files_enabled.data),
            max_file_mb=entry.max_file_mb.data,
            max_total_mb=entry.max_total_mb.data,
            max_files=entry.max_files.data,
            allowed_types=entry.allowed_types.data or "",
            retention_days=entry.retention_days.data or 0,
        )
        saved = apply(lambda: forms.update_form(session, form, changes), entry)
        if saved:
            flash("File settings saved." if saved.value else "Nothing changed.", "success")
            return redirect(url_for("forms.settings", key=form.key) + "#uploads")
        form = permissions.load_form(session, current_user, key)
    return _settings_page(
        form,
        FormSettingsInput(formdata=None, obj=form),
        RecipientInput(formdata=None),
        upload_input=entry,
    ), 400


# A verification link goes to whatever address an owner types: at most this many, added or
# resent, per account, so that an account cannot be used to mail someone over and over.
RECIPIENT_MAIL_LIMIT = "10/hour;30/day"


def _account_key() -> str:
    return f"recipient-mail:{current_user.id}"


def _mailed(response: Response) -> bool:
    # Added or resent: a redirect. A refusal is the page again, and mails nobody.
    return 300 <= response.status_code < 400


recipient_mail = limiter.shared_limit(
    RECIPIENT_MAIL_LIMIT, scope="recipient-mail", key_func=_account_key, deduct_when=_mailed
)


@bp.post("/forms/<key>/spam")
@login_required
def spam_settings(key: str) -> str | Response | tuple[str, int]:
    session = db.session()
    form = permissions.load_form(session, current_user, key)
    entry = SpamSettingsInput()
    if entry.validate_on_submit():
        provider = entry.captcha_provider.data or "off"
        changes = spam.SpamChanges(
            allowed_domains=entry.allowed_domains.data or "",
            allow_headerless=bool(entry.allow_headerless.data),
            rate_limit=entry.rate_limit.data or "",
            captcha_provider=provider,
            # Blank keeps the secret there is (it is never shown back).
            captcha_secret=entry.captcha_secret.data or None,
            captcha_threshold=entry.captcha_threshold.data,
            captcha_action=entry.captcha_action.data or "",
            captcha_fail_open=entry.captcha_fail.data != "closed",
            allow_cc=bool(entry.allow_cc.data),
            honeypot=entry.honeypot.data or "",
            max_links=-1 if entry.max_links.data is None else entry.max_links.data,
            blocked_words=entry.blocked_words.data or "",
            blocked_senders=entry.blocked_senders.data or "",
            blocked_addresses=entry.blocked_addresses.data or "",
            min_seconds=entry.min_seconds.data or 0,
            akismet=bool(entry.akismet.data),
            notify_limit=-1 if entry.notify_limit.data is None else entry.notify_limit.data,
        )
        saved = apply(lambda: spam.update_spam_settings(session, form, changes), entry)
        if saved:
            spam.forget_policy(form.key)
            flash("Spam settings saved." if saved.value else "Nothing changed.", "success")
            return redirect(url_for("forms.settings", key=form.key) + "#spam")
        form = permissions.load_form(session, current_user, key)
    return (
        _settings_page(
            form, FormSettingsInput(formdata=None, obj=form), RecipientInput(formdata=None), entry
        ),
        400,
    )


@bp.post("/forms/<key>/recipients")
@login_required
@recipient_mail
def add_recipient(key: str) -> str | Response | tuple[str, int]:
    session = db.session()
    form = permissions.load_form(session, current_user, key)
    entry = RecipientInput()
    if entry.validate_on_submit():
        address, base_url = entry.email.data or "", get_settings().base_url
        added = apply(
            lambda: forms.add_recipient(session, form, address, base_url=base_url),
            entry.email,
            refuse=(InvalidInput, Conflict),
        )
        if added:
            recipient = added.value
            if recipient.verified:
                flash(f"{recipient.email} added: it is your confirmed address.", "success")
            else:
                flash(_pending_message(recipient.email), "info")
            return redirect(url_for("forms.settings", key=form.key))
        form = permissions.load_form(session, current_user, key)
    return _settings_page(form, FormSettingsInput(formdata=None, obj=form), entry), 400


@bp.post("/forms/<key>/recipients/<int:recipient_id>/resend")
@login_required
@recipient_mail
def resend_verification(key: str, recipient_id: int) -> Response:
    session = db.session()
    form = permissions.load_form(session, current_user, key)
    recipient = forms.find_recipient(form, recipient_id)
    forms.send_verification(session, recipient, base_url=get_settings().base_url)
    session.commit()
    flash(f"A new verification link is on its way to {recipient.email}.", "info")
    return redirect(url_for("forms.settings", key=form.key))


@bp.post("/forms/<key>/recipients/<int:recipient_id>/remove")
@login_required
def remove_recipient(key: str, recipient_id: int) -> Response:
    session = db.session()
    form = permissions.load_form(session, current_user, key)
    recipient = forms.remove_recipient(session, form, recipient_id)
    session.commit()
    flash(f"{recipient.email} no longer receives this form's submissions.", "success")
    return redirect(url_for("forms.settings", key=form.key))


@bp.post("/forms/<key>/disable")
@login_required
def disable(key: str) -> Response:
    return _set_enabled(key, False)


@bp.post("/forms/<key>/enable")
@login_required
def enable(key: str) -> Response:
    return _set_enabled(key, True)


@bp.route("/forms/<key>/delete", methods=["GET", "POST"])
@login_required
def delete(key: str) -> str | Response:
    session = db.session()
    form = permissions.load_form(session, current_user, key)
    if request.method == "POST":
        name = form.name
        count = forms.delete_form(session, form)
        session.commit()
        flash(f"Form {name} deleted with its {count} submission(s).", "success")
        return redirect(url_for("forms.index"))
    total = stats.form_stats(session, [form.id])[form.id].total
    return render_template("dashboard/form_delete.html", form=form, total=total)


@bp.get("/forms/<key>/setup")
@login_required
def setup(key: str) -> str:
    form = permissions.load_form(db.session(), current_user, key)
    return render_template(
        "dashboard/form_setup.html",
        form=form,
        endpoint=endpoint_url(form),
        base_url=get_settings().base_url,
        special_fields=SPECIAL_FIELD_HELP,
    )


@bp.route("/verify/<token>", methods=["GET", "POST"])
def verify(token: str) -> str | Response:
    """The link mailed to a new recipient: a page asking to confirm (a mail scanner that
    follows links must not verify an address for its owner), then the POST that does."""
    session = db.session()
    if request.method == "POST":
        recipient = forms.verify_recipient(session, token)
        session.commit()
        return render_template("dashboard/form_verified.html", recipient=recipient)
    recipient = forms.pending_recipient(session, token)
    return render_template("dashboard/form_verify.html", recipient=recipient)


def _set_enabled(key: str, enabled: bool) -> Response:
    session = db.session()
    form = permissions.load_form(session, current_user, key)
    forms.set_enabled(session, form, enabled)
    session.commit()
    state = "enabled: it accepts submissions" if enabled else "disabled: it refuses submissions"
    flash(f"Form {form.name} {state}.", "success")
    return redirect(safe_next(request.form.get("back")) or url_for("forms.settings", key=form.key))


def _settings_page(
    form: Form,
    entry: FormSettingsInput,
    recipient_input: RecipientInput,
    spam_input: SpamSettingsInput | None = None,
    upload_input: UploadSettingsInput | None = None,
) -> str:
    config = get_settings()
    addresses = [r.email for r in form.recipients]
    info = ses_info()
    return render_template(
        "dashboard/form_settings.html",
        form=form,
        input=entry,
        recipient_input=recipient_input,
        spam_input=spam_input or _spam_input(form),
        upload_input=upload_input or UploadSettingsInput(formdata=None, obj=form),
        upload_ceiling_mb=config.max_upload_body_bytes // (1024 * 1024),
        default_retention=config.retention_days,
        endpoint=endpoint_url(form),
        suppressed={
            a: suppressions.suppressed_reason(s)
            for a, s in suppressions.suppressed_among(db.session(), addresses).items()
        },
        canonical=suppressions.canonical,
        sandboxed=info.unreachable_in_sandbox(addresses) if info else set(),
        sandbox_advice=SANDBOX_ADVICE,
        default_rate_limit=config.rate_limit,
        default_notify_limit=config.notify_limit_per_form,
        akismet_configured=bool(config.akismet_api_key),
        script_url=f"{config.base_url}/formrelay.js",
    )


def _spam_input(form: Form) -> SpamSettingsInput:
    """The spam settings as they are, for the page (the secret is never shown back)."""
    return SpamSettingsInput(
        formdata=None,
        allowed_domains="\n".join(form.allowed_domains or []),
        allow_headerless=form.allow_headerless,
        rate_limit=form.rate_limit or "",
        captcha_provider=form.captcha_provider or "off",
        captcha_threshold=form.captcha_threshold,
        captcha_action=form.captcha_action or "",
        captcha_fail="open" if form.captcha_fail_open else "closed",
        allow_cc=form.allow_cc,
        honeypot=form.honeypot,
        max_links=form.max_links,
        blocked_words="\n".join(form.blocked_words or []),
        blocked_senders="\n".join(form.blocked_senders or []),
        blocked_addresses="\n".join(form.blocked_addresses or []),
        min_seconds=form.min_seconds,
        akismet=form.akismet,
        notify_limit=form.notify_limit,
    )


def _pending_message(address: str) -> str:
    return (
        f"A verification link was sent to {address}: it receives submissions once the "
        "link is followed."
    )
