"""The dashboard's WTForms classes: *Input, so that "form" stays the domain word."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, SubmitField
from wtforms.validators import AnyOf, DataRequired, Length


class LoginInput(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])
    remember = BooleanField("Remember me")
    next = HiddenField()
    submit = SubmitField("Log in")


class ConfirmInput(FlaskForm):
    """A form with nothing but its CSRF token: for buttons that change state (log out,
    delete, retry)."""

    submit = SubmitField("Confirm")


# -- admin ---------------------------------------------------------------------------------------
class InviteInput(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    admin = BooleanField("Admin")
    submit = SubmitField("Invite")


class RoleInput(FlaskForm):
    """The role a "Make admin" / "Make member" button sets."""

    role = HiddenField(validators=[AnyOf(["admin", "member"], message="Choose admin or member.")])
