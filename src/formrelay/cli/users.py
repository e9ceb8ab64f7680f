"""`formrelay user`: create users and give them a sign-in link."""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from ..extensions import db
from ..services import accounts
from ..services.errors import DomainError
from ..settings import get_settings
from .common import _fail, _session, _writing


@click.group(cls=AppGroup)
def user() -> None:
    """Manage users."""


@user.command("create")
@click.option("--email", required=True, help="The user's e-mail address.")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@with_appcontext
def user_create(email: str, admin: bool) -> None:
    """Create a user; the last line printed is a one-time link (valid 24 h) where they set
    a password and are signed in. Give it to them: nothing is mailed."""
    try:
        created = accounts.create_user(_writing(), email, admin=admin)
    except DomainError as exc:
        raise _fail(exc) from None
    db.session.commit()
    click.echo(f"Created {'admin' if admin else 'user'} {created.email}")
    click.echo("Sign-in link (works once, for 24 hours; sets the password):")
    click.echo(accounts.sign_in_link(get_settings(), created))


@user.command("login-link")
@click.option("--email", required=True, help="The user's e-mail address.")
@with_appcontext
def user_login_link(email: str) -> None:
    """Print a one-time sign-in link (valid 24 h) for a user locked out: it opens a page
    where they set a new password and are signed in. Links printed before keep working until
    one of them is used (setting the password ends the others)."""
    found = accounts.find_user(_session(), email)
    db.session.rollback()
    if found is None:
        raise click.ClickException(f"No user {email}; create one with `formrelay user create`.")
    if found.disabled:
        raise click.ClickException(f"{found.email} is disabled; an admin must enable it first.")
    click.echo(f"Sign-in link for {found.email} (works once, for 24 hours; sets the password):")
    click.echo(accounts.sign_in_link(get_settings(), found))
