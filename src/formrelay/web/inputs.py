"""The dashboard's WTForms classes: *Input, so that "form" stays the domain word."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    FloatField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
    URLField,
)
from wtforms.fields import Field
from wtforms.fields.choices import SelectChoice
from wtforms.fields.core import UnboundField
from wtforms.validators import (
    AnyOf,
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
)


def no_nul(form: FlaskForm, field: Field) -> None:
    """Refuse text holding NUL: no value here needs it, and PostgreSQL's text refuses it."""
    if isinstance(field.data, str) and "\x00" in field.data:
        raise StopValidation("This holds a NUL character, which is not allowed here.")


class Input(FlaskForm):
    """The base of the dashboard's inputs: every field refuses NUL before its own checks."""

    class Meta:
        def bind_field(
            self, form: FlaskForm, unbound_field: UnboundField, options: dict[str, Any]
        ) -> Field:
            validators = unbound_field.kwargs.get("validators") or []
            options["validators"] = [no_nul, *validators]
            return unbound_field.bind(form=form, **options)


class LoginInput(Input):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])
    remember = BooleanField("Remember me")
    next = HiddenField()
    submit = SubmitField("Log in")


class ConfirmInput(Input):
    """A form with nothing but its CSRF token: for buttons that change state (log out,
    delete, retry)."""

    submit = SubmitField("Confirm")


class RegisterInput(Input):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])
    submit = SubmitField("Create account")


class ResetRequestInput(Input):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    submit = SubmitField("Send reset link")


class SetPasswordInput(Input):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=1000)])
    submit = SubmitField("Set password")


class ChangePasswordInput(Input):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=1000)])
    password = PasswordField("New password", validators=[DataRequired(), Length(max=1000)])
    submit = SubmitField("Change password")


class ChangeEmailInput(Input):
    email = EmailField("New email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Current password", validators=[DataRequired(), Length(max=1000)])
    submit = SubmitField("Change email")


class TimezoneInput(Input):
    timezone = StringField("Time zone", validators=[DataRequired(), Length(max=64)])
    submit = SubmitField("Save time zone")


# -- forms (web/dashboard/forms.py) --------------------------------------------------------
class NewFormInput(Input):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    recipient = EmailField("Send submissions to", validators=[DataRequired(), Length(max=320)])
    submit = SubmitField("Create form")


class FormSettingsInput(Input):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    redirect_url = URLField("Redirect after submitting", validators=[Length(max=2000)])
    subject = StringField("Subject of notifications", validators=[Length(max=200)])
    store_only = BooleanField("Store only: keep submissions, send no notifications")
    submit = SubmitField("Save settings")


class SpamSettingsInput(Input):
    """A form's spam and abuse settings (services/spam.py checks every value)."""

    allowed_domains = TextAreaField("Allowed domains", validators=[Length(max=20_000)])
    allow_headerless = BooleanField("Accept requests that name no page (no Origin or Referer)")
    rate_limit = StringField("Rate limit per visitor address", validators=[Length(max=200)])
    captcha_provider = SelectField(
        "CAPTCHA",
        choices=[
            SelectChoice("off", "Off"),
            SelectChoice("turnstile", "Cloudflare Turnstile"),
            SelectChoice("hcaptcha", "hCaptcha"),
            SelectChoice("recaptcha-v2", "Google reCAPTCHA v2"),
            SelectChoice("recaptcha-v3", "Google reCAPTCHA v3"),
        ],
    )
    captcha_secret = PasswordField("CAPTCHA secret key", validators=[Length(max=255)])
    captcha_threshold = FloatField(
        "reCAPTCHA v3: lowest score accepted",
        validators=[Optional(), NumberRange(min=0, max=1)],
    )
    captcha_action = StringField("reCAPTCHA v3: expected action", validators=[Length(max=100)])
    captcha_fail = SelectField(
        "When the CAPTCHA service is unreachable",
        choices=[
            SelectChoice("open", "Keep the submission as suspected spam (nothing is lost)"),
            SelectChoice("closed", "Refuse it with 503 (the visitor tries again)"),
        ],
    )
    allow_cc = BooleanField("Allow _cc: submitters may send copies to addresses they choose")
    honeypot = StringField("Honeypot field name", validators=[DataRequired(), Length(max=64)])
    max_links = IntegerField("At most this many links", validators=[Optional(), NumberRange(min=0)])
    blocked_words = TextAreaField("Blocked words or phrases", validators=[Length(max=20_000)])
    blocked_senders = TextAreaField("Blocked senders", validators=[Length(max=20_000)])
    blocked_addresses = TextAreaField("Blocked visitor addresses", validators=[Length(max=20_000)])
    min_seconds = IntegerField(
        "Minimum seconds between page load and submit",
        validators=[Optional(), NumberRange(min=0, max=3600)],
    )
    akismet = BooleanField("Ask Akismet")
    notify_limit = IntegerField(
        "Notifications an hour at most", validators=[Optional(), NumberRange(min=0)]
    )
    submit = SubmitField("Save spam settings")


class UploadSettingsInput(Input):
    files_enabled = BooleanField("Accept files: file inputs in the form are stored and linked")
    max_file_mb = IntegerField(
        "Largest file (MB)", validators=[InputRequired(), NumberRange(min=1, max=10_000)]
    )
    max_total_mb = IntegerField(
        "All files of one submission (MB)",
        validators=[InputRequired(), NumberRange(min=1, max=10_000)],
    )
    max_files = IntegerField(
        "Files per submission", validators=[InputRequired(), NumberRange(min=1, max=100)]
    )
    allowed_types = StringField("Allowed types", validators=[InputRequired(), Length(max=1000)])
    retention_days = IntegerField(
        "Keep submissions for (days)",
        validators=[Optional(), NumberRange(min=0, max=36_500)],
    )
    submit = SubmitField("Save file settings")


class RecipientInput(Input):
    email = EmailField("Add a recipient", validators=[DataRequired(), Length(max=320)])
    submit = SubmitField("Add recipient")


# -- admin ---------------------------------------------------------------------------------------
class InviteInput(Input):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    admin = BooleanField("Admin")
    submit = SubmitField("Invite")


class RoleInput(Input):
    """The role a "Make admin" / "Make member" button sets."""

    role = HiddenField(validators=[AnyOf(["admin", "member"], message="Choose admin or member.")])


class SuppressionInput(Input):
    address = EmailField("Address", validators=[DataRequired(), Length(max=320)])
    detail = StringField("Note", validators=[Length(max=500)])
    submit = SubmitField("Suppress")
