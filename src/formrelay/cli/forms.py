"""`formrelay form`: create, show, change, disable and delete forms."""

from __future__ import annotations

from collections.abc import Sequence

import click
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.orm import Session

from ..delivery.message import notification_subject
from ..extensions import db
from ..models import Form, Submission, User
from ..services import accounts, forms, inbox, spam
from ..services.errors import DomainError
from ..settings import get_settings
from .common import _fail, _session, _stamp, _submissions, _writing
from .spam import describe_spam, parse_spam_options, with_spam_options

DEMO_FORM_NAME = "Demo form"
DEMO_RECIPIENT = "you@example.com"  # unless FORMRELAY_ADMIN names the administrator


@click.group(cls=AppGroup)
def form() -> None:
    """Manage forms."""


@form.command("create")
@click.option("--name", required=True, help="A name for the form, shown in notifications.")
@click.option(
    "--to",
    "recipients",
    multiple=True,
    required=True,
    help="An address that receives submissions (repeatable); verified at once.",
)
@click.option("--redirect", "redirect_url", help="Where browsers go after submitting.")
@click.option("--subject", help="Subject of notification e-mails.")
@click.option(
    "--owner",
    "owner_email",
    help="The owner's e-mail; default: the first admin, made from FORMRELAY_ADMIN or the "
    "first --to if there is none.",
)
@with_appcontext
def form_create(
    name: str,
    recipients: Sequence[str],
    redirect_url: str | None,
    subject: str | None,
    owner_email: str | None,
) -> None:
    """Create a form; its endpoint URL is the last line printed."""
    session = _writing()
    try:
        owner = _owner(session, owner_email, default_email=recipients[0])
        created = forms.create_form(
            session,
            owner,
            name=name,
            recipients=recipients,
            redirect_url=redirect_url,
            subject=subject,
            verified=True,
        )
    except DomainError as exc:
        raise _fail(exc) from None
    db.session.commit()
    click.echo(
        f"Created form {created.name!r} (key {created.key}), owner {owner.email}, "
        f"notifying {', '.join(r.email for r in created.recipients)}"
    )
    click.echo(endpoint_url(created))


def _owner(session: Session, owner_email: str | None, *, default_email: str) -> User:
    """The named user; else the first admin; else the administrator FORMRELAY_ADMIN names,
    made an admin; else a new admin with `default_email`."""
    if owner_email:
        found = accounts.find_user(session, owner_email)
        if found is None:
            raise click.ClickException(
                f"No user {owner_email}; create one with `formrelay user create --email ...`."
            )
        return found
    admin = accounts.first_admin(session)
    if admin is not None:
        return admin
    configured = get_settings().admin_email
    if configured:
        return accounts.ensure_admin(session, configured)  # the operator named it the admin
    existing = accounts.find_user(session, default_email)
    if existing is not None:
        # Promoting an existing member to admin behind the operator's back would be a surprise.
        raise click.ClickException(
            f"There is no admin to own the form and {existing.email} is a user who is not one; "
            "create an admin with `formrelay user create --email E --admin`."
        )
    return accounts.create_user(session, default_email, admin=True)


@form.command("list")
@with_appcontext
def form_list() -> None:
    """List forms with their keys, recipients and endpoint URLs."""
    rows = forms.list_forms(_session())
    if not rows:
        click.echo("No forms yet: create one with `formrelay form create --name N --to EMAIL`.")
        return
    for f in rows:
        state = "enabled" if f.enabled else "disabled"
        to = ", ".join(r.email + ("" if r.verified else " (unverified)") for r in f.recipients)
        click.echo(f"{f.key}  {f.name}  [{state}]  to: {to or '-'}  {endpoint_url(f)}")


@form.command("show")
@click.argument("key")
@with_appcontext
def form_show(key: str) -> None:
    """Show every setting of a form, and how many submissions it has kept."""
    session = _session()
    try:
        found = forms.find_form(session, key)
    except DomainError as exc:
        raise _fail(exc) from None
    for line in _describe(session, found):
        click.echo(line)
    db.session.rollback()


def _describe(session: Session, f: Form) -> list[str]:
    counts = inbox.count_submissions(session, f)
    default_subject = notification_subject(Submission(), f, get_settings())
    recipients = [
        f"{r.email} ({'verified' if r.verified else 'unverified: receives nothing yet'})"
        for r in f.recipients
    ] or ["(none)"]
    rows = [
        ("Name", f.name),
        ("Key", f.key),
        ("Endpoint", endpoint_url(f)),
        ("Owner", f.owner.email),
        ("State", "enabled" if f.enabled else "disabled: submissions are refused"),
        ("Redirect", f.redirect_url or "(none: formrelay's thanks page)"),
        ("Subject", f.subject or f"(default: {default_subject})"),
        ("Recipients", recipients[0]),
        *(("", more) for more in recipients[1:]),
        ("Files", _files_line(f)),
        ("Retention", _retention_line(f, get_settings().retention_days)),
        ("Created", _stamp(f.created_at)),
        ("Submissions", f"{counts.inbox} (and {counts.spam} spam)"),
        *describe_spam(f),
    ]
    width = max(len(label) for label, _ in rows)
    return [f"{label:<{width}} {value}".rstrip() for label, value in rows]


def _files_line(f: Form) -> str:
    if not f.files_enabled:
        return "off: submissions with files are refused"
    types = ", ".join(f"{t}" if t == "*" else f".{t}" for t in f.allowed_types.split(","))
    return (
        f"on: at most {f.max_files} file(s), {f.max_file_mb} MB each, {f.max_total_mb} MB in "
        f"all; {types}"
    )


def _retention_line(f: Form, default_days: int) -> str:
    if f.retention_days:
        return f"{f.retention_days} days"
    if default_days:
        return f"{default_days} days (FORMRELAY_RETENTION_DAYS)"
    return "kept until deleted"


@form.command("update")
@click.argument("key")
@click.option("--name", help="A new name.")
@click.option("--redirect", "redirect_url", help='Where browsers go after submitting; "" clears.')
@click.option("--subject", help='Subject of notification e-mails; "" restores the default.')
@click.option(
    "--add-to",
    "add_recipients",
    multiple=True,
    help="Add a recipient (repeatable); verified at once.",
)
@click.option(
    "--remove-to", "remove_recipients", multiple=True, help="Remove a recipient (repeatable)."
)
@with_spam_options
@click.option(
    "--files",
    "files_enabled",
    type=click.Choice(["on", "off"]),
    help="Accept file uploads (off: submissions with files are refused).",
)
@click.option("--max-file-mb", type=int, help="The largest file accepted, in MB.")
@click.option("--max-total-mb", type=int, help="The most all files of one submission may weigh.")
@click.option("--max-files", type=int, help="The most files one submission may carry.")
@click.option(
    "--allowed-types",
    metavar="EXTS",
    help='Extensions accepted, comma-separated ("pdf,png,jpg"); "*" for any but programs, '
    "scripts and web pages (which must be listed by name).",
)
@click.option(
    "--retention-days",
    type=int,
    help="Delete submissions (and their files) older than this; 0 follows "
    "FORMRELAY_RETENTION_DAYS.",
)
@with_appcontext
def form_update(
    key: str,
    name: str | None,
    redirect_url: str | None,
    subject: str | None,
    add_recipients: Sequence[str],
    remove_recipients: Sequence[str],
    files_enabled: str | None,
    max_file_mb: int | None,
    max_total_mb: int | None,
    max_files: int | None,
    allowed_types: str | None,
    retention_days: int | None,
    **spam_options: object,
) -> None:
    """Change a form's settings; what is not given stays as it is."""
    changes = forms.FormChanges(
        name=name,
        redirect_url=redirect_url,
        subject=subject,
        add_recipients=add_recipients,
        remove_recipients=remove_recipients,
        files_enabled=None if files_enabled is None else files_enabled == "on",
        max_file_mb=max_file_mb,
        max_total_mb=max_total_mb,
        max_files=max_files,
        allowed_types=allowed_types,
        retention_days=retention_days,
    )
    spam_changes = parse_spam_options(spam_options)
    if not changes and not spam_changes:
        raise click.UsageError("Nothing to change: give at least one option (see --help).")
    session = _writing()
    try:
        found = forms.find_form(session, key)
        # The spam settings first: a redirect is checked against the allowed domains.
        changed = spam.update_spam_settings(session, found, spam_changes) if spam_changes else []
        if changes:
            changed = forms.update_form(session, found, changes, verified=True) + changed
    except DomainError as exc:
        raise _fail(exc) from None
    db.session.commit()
    if not changed:
        click.echo(f"Form {found.name!r} (key {found.key}) is unchanged.")
        return
    click.echo(f"Updated form {found.name!r} (key {found.key}): {', '.join(changed)}")
    for line in _describe(session, found):
        click.echo(line)
    db.session.rollback()


@form.command("disable")
@click.argument("key")
@with_appcontext
def form_disable(key: str) -> None:
    """Refuse the form's submissions (403 INACTIVE) until it is enabled again."""
    _set_enabled(key, False)


@form.command("enable")
@click.argument("key")
@with_appcontext
def form_enable(key: str) -> None:
    """Accept the form's submissions again."""
    _set_enabled(key, True)


def _set_enabled(key: str, enabled: bool) -> None:
    session = _writing()
    try:
        found = forms.set_enabled(session, forms.find_form(session, key), enabled)
    except DomainError as exc:
        raise _fail(exc) from None
    db.session.commit()
    state = "enabled: it accepts submissions" if enabled else "disabled: it refuses submissions"
    click.echo(f"Form {found.name!r} (key {found.key}) is {state}.")


@form.command("delete")
@click.argument("key")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def form_delete(key: str, yes: bool) -> None:
    """Delete a form with its submissions and their deliveries (asks first)."""
    session = _writing()
    try:
        found = forms.find_form(session, key)
        counts = inbox.count_submissions(session, found)
    except DomainError as exc:
        raise _fail(exc) from None
    name = found.name
    kept = counts.inbox + counts.spam
    if not yes and not click.confirm(
        f"Delete form {name!r} (key {key}) and its {_submissions(kept)}? This cannot be undone",
        err=True,
    ):
        db.session.rollback()
        click.echo("Nothing was deleted.", err=True)
        click.get_current_context().exit(1)
    deleted = forms.delete_form(session, found)
    db.session.commit()
    click.echo(f"Deleted form {name!r} (key {key}) and its {_submissions(deleted)}.")


@form.command("demo")
@with_appcontext
def form_demo() -> None:
    """Create the demo form once, then print its URL and a paste-ready HTML snippet."""
    from sqlalchemy import select

    session = _writing()
    demo = session.scalar(select(Form).where(Form.name == DEMO_FORM_NAME).limit(1))
    if demo is None:
        admin = get_settings().admin_email
        demo = forms.create_form(
            session,
            _demo_owner(session),
            name=DEMO_FORM_NAME,
            recipients=[admin or DEMO_RECIPIENT],
            verified=True,
        )
        db.session.commit()
    url = endpoint_url(demo)
    to = ", ".join(r.email for r in demo.recipients)
    backend = get_settings().mail_backend
    if backend == "console":
        sent = (
            f"`formrelay serve` prints the notification for {to} on its console when the "
            "submission arrives (the console mail backend prints mail instead of sending it)."
        )
    else:
        sent = f"the notification goes to {to} through {backend} (sent by the worker)."
    click.echo(f"\nDemo form: {url}\nPaste this into any web page and submit it: {sent}\n")
    click.echo(snippet(url))
    db.session.rollback()


def _demo_owner(session: Session) -> User:
    """The first admin, else the administrator FORMRELAY_ADMIN names, else a member for the
    placeholder address: never an admin, so that the first real form makes the real one."""
    admin = accounts.first_admin(session)
    if admin is not None:
        return admin
    configured = get_settings().admin_email
    if configured:
        return accounts.ensure_admin(session, configured)
    placeholder = accounts.find_user(session, DEMO_RECIPIENT)
    return placeholder or accounts.create_user(session, DEMO_RECIPIENT)


def endpoint_url(f: Form) -> str:
    return f"{get_settings().base_url}/f/{f.key}"


def snippet(url: str) -> str:
    return (
        f'<form action="{url}" method="POST">\n'
        '  <input type="email" name="email" placeholder="Your e-mail" required>\n'
        '  <textarea name="message" placeholder="Your message"></textarea>\n'
        '  <input type="text" name="_gotcha" style="display:none" tabindex="-1" '
        'autocomplete="off">\n'
        '  <button type="submit">Send</button>\n'
        "</form>\n"
    )
