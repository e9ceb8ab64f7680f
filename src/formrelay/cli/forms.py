"""The `formrelay` command: Flask's CLI plus formrelay's own commands."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, NoAppException, ScriptInfo, with_appcontext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from .. import create_app
from ..db import begin_write
from ..delivery import DeliveryFailed, check_backend, create_backend
from ..delivery.message import build_test_message, notification_subject
from ..extensions import db
from ..ingest import group_commit
from ..models import Form, Submission, User, utcnow
from ..services import accounts, exports, forms, imports, inbox, spam
from ..services.addresses import normalize_email
from ..services.errors import DomainError
from ..services.workers import outbox_status
from ..settings import ConfigError, Settings, get_settings, init_app, load_settings
from ..worker import make_worker
from ..worker.priority import lower_priority

ON_OFF = click.Choice(["on", "off"])
DEMO_FORM_NAME = "Demo form"
DEMO_RECIPIENT = "you@example.com"  # unless FORMRELAY_ADMIN names the administrator
SUMMARY_CHARS = 60  # of a submission's fields, in `submissions list`


def _create_app() -> Flask:
    return create_app()


class FormrelayGroup(FlaskGroup):
    """Flask's command group, where a bad setting is one line even while listing commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        # Flask prints a traceback and carries on when the app cannot be built for the
        # listing (`formrelay --help`); building it first lets ConfigError reach main().
        with contextlib.suppress(NoAppException):  # Flask's listing reports this one itself
            ctx.ensure_object(ScriptInfo).load_app()
        return super().list_commands(ctx)


cli = FormrelayGroup(
    name="formrelay",
    create_app=_create_app,
    help="formrelay: a self-hosted backend for HTML forms.",
)


def main() -> None:
    """Console entry point: a bad setting is one clear line, not a traceback."""
    try:
        cli.main(prog_name="formrelay")
    except ConfigError as exc:
        click.echo(f"formrelay: configuration error: {exc}", err=True)
        sys.exit(2)


def _session() -> Session:
    """The current app context's session, as the domain functions take it."""
    return db.session()


def _writing() -> Session:
    """The session, in a write transaction from the start: these commands read, then write,
    and on SQLite a read transaction cannot become a writer once another process has written
    (see db.begin_write)."""
    session = _session()
    begin_write(session)
    return session


def _fail(exc: DomainError) -> click.ClickException:
    db.session.rollback()
    return click.ClickException(exc.message)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


# -- serve and worker ----------------------------------------------------------------------
@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port to listen on; default: $PORT, else 5000.",
)
@with_appcontext
def serve(host: str, port: int | None) -> None:
    """Run the web app and a delivery worker in one process (development).

    Unless FORMRELAY_BASE_URL is set, the URLs formrelay gives out (redirects, endpoints)
    follow --host and --port. While no user has a password (a first start), it makes the
    admin (FORMRELAY_ADMIN, else admin@localhost) and prints a one-time sign-in link."""
    from werkzeug.serving import run_simple

    _configure_logging()
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    # Replaced before the worker takes its copy: unless FORMRELAY_BASE_URL is set, the base
    # URL is the address this server listens on, not the default port's.
    given = get_settings(app)
    port = port or given.port
    serving = given.serving_at(host, port)
    init_app(app, serving)
    listening = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    click.echo(  # first, before the worker's log lines
        f"formrelay is serving {listening}"
        + ("" if serving.base_url == listening else f" (public URL {serving.base_url})")
        + ", with a worker in-process"
    )
    _first_start(serving)
    worker = make_worker(app)
    group_commit(app).after_commit(worker.wake)  # deliver now rather than at the next poll
    thread = threading.Thread(target=worker.run, name="formrelay-worker", daemon=True)
    thread.start()
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        worker.stop()
        thread.join(timeout=30)


def _first_start(settings: Settings) -> None:
    """While nobody has a password: make the administrator (FORMRELAY_ADMIN, else
    admin@localhost) and print a one-time link where they set one."""
    try:
        found = accounts.first_start(_writing(), settings)
        db.session.commit()
    except DomainError as exc:
        raise _fail(exc) from None
    except DBAPIError as exc:  # no tables yet, or no database: serving still says so per page
        db.session.rollback()
        click.echo(
            f"formrelay: cannot check for a first start ({type(exc.orig).__name__}); "
            "run `formrelay db upgrade`.",
            err=True,
        )
        return
    if found is not None:
        admin, link = found
        click.echo(
            f"No one can log in yet. Open this link (once, within 24 hours) to set the password "
            f"of the admin {admin.email}:\n{link}"
        )


@cli.group("worker", invoke_without_command=True)
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.pass_context
@with_appcontext
def worker_command(ctx: click.Context, once: bool) -> None:
    """Deliver pending submissions: claim, send, retry with backoff (SIGTERM stops cleanly).

    Without a subcommand, run a worker; `formrelay worker status` shows the workers."""
    if ctx.invoked_subcommand is not None:
        if once:
            raise click.UsageError("--once runs a worker; it does not go with a subcommand")
        return
    _configure_logging()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    worker = make_worker(app, own_engine=True)
    if once:
        outcomes = worker.drain()
        click.echo(f"{len(outcomes)} deliveries processed")
        return
    # Before run() starts the heartbeat thread, which takes the same priority.
    lower_priority(get_settings(app).worker_nice)
    worker.install_signal_handlers()
    worker.run()


@worker_command.command("status")
@with_appcontext
def worker_status() -> None:
    """Show the workers (alive or not, last beat) and what waits in the outbox.

    Exits with status 1 when no worker is alive."""
    settings = get_settings()
    now = utcnow()
    status = outbox_status(_session(), now=now, grace_seconds=settings.worker_grace_seconds)
    db.session.rollback()
    if not status.workers:
        click.echo("No worker has registered: start one with `formrelay worker`.")
    for w in status.workers:
        state = "alive" if w.alive else "dead"
        click.echo(
            f"{state:5}  {w.id}  host {w.host} pid {w.pid}  started {_stamp(w.started_at)}  "
            f"last beat {_ago(now - w.last_beat)} ago"
        )
    age = status.oldest_due_age(now)
    click.echo(
        f"{len(status.alive)} alive of {len(status.workers)} registered; deliveries due "
        f"{status.due}, sending {status.sending}, retries scheduled {status.scheduled}; "
        f"oldest due for {_ago(age) if age is not None else '-'}"
    )
    if not status.alive:
        ctx = click.get_current_context()
        ctx.exit(1)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(delta: timedelta) -> str:
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- users and forms -----------------------------------------------------------------------
@cli.group()
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


@cli.group()
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
        *_describe_spam(f),
    ]
    width = max(len(label) for label, _ in rows)
    return [f"{label:<{width}} {value}".rstrip() for label, value in rows]


def _describe_spam(f: Form) -> list[tuple[str, str]]:
    """The form's spam and abuse settings, as `form update` names them."""
    config = get_settings()

    def onoff(value: bool) -> str:
        return "on" if value else "off"

    def listed(values: Sequence[str]) -> str:
        return ", ".join(values) or "(none)"

    captcha = f.captcha_provider or "off"
    if f.captcha_provider:
        captcha += f" (secret {'set' if f.captcha_secret else 'missing'}; provider away: fail "
        captcha += ("open: kept as spam" if f.captcha_fail_open else "closed: 503") + ")"
    ceiling = (
        f"{f.notify_limit or 'none'} an hour"
        if f.notify_limit is not None
        else f"(default: {config.notify_limit_per_form} an hour)"
        if config.notify_limit_per_form
        else "(default: none)"
    )
    return [
        ("Allowed domains", listed(f.allowed_domains or []) if f.allowed_domains else "(any)"),
        ("Header-less", onoff(f.allow_headerless) + " (requests with no Origin or Referer)"),
        ("Rate limit", f.rate_limit or f"(default: {config.rate_limit}) per address"),
        ("CAPTCHA", captcha),
        *(
            [("v3 threshold", f"{f.captcha_threshold:g}, action {f.captcha_action or '(any)'}")]
            if f.captcha_provider == "recaptcha-v3"
            else []
        ),
        ("Allow _cc", onoff(f.allow_cc)),
        ("Honeypot", f.honeypot),
        ("Max links", "(no limit)" if f.max_links is None else str(f.max_links)),
        ("Blocked words", listed(f.blocked_words or [])),
        ("Blocked senders", listed(f.blocked_senders or [])),
        ("Blocked IPs", listed(f.blocked_addresses or [])),
        ("Min seconds", str(f.min_seconds) if f.min_seconds else "(none)"),
        (
            "Akismet",
            onoff(f.akismet) + ("" if config.akismet_api_key else " (AKISMET_API_KEY unset)"),
        ),
        ("Ceiling", ceiling),
    ]


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
@click.option(
    "--allowed-domains",
    help='Sites the form may be posted from: "example.org,*.example.net"; "" allows any.',
)
@click.option(
    "--allow-headerless",
    type=ON_OFF,
    help="With allowed domains: accept requests with no Origin or Referer.",
)
@click.option("--rate-limit", help='Per client address: "5/minute;100/day"; "" for the default.')
@click.option(
    "--captcha",
    type=click.Choice([*spam.CAPTCHA_PROVIDERS, "off"]),
    help="The CAPTCHA the form's page carries, verified server-side.",
)
@click.option("--captcha-secret", help="The CAPTCHA provider's secret key for this site.")
@click.option(
    "--captcha-threshold", type=click.FloatRange(0, 1), help="reCAPTCHA v3: the lowest score."
)
@click.option("--captcha-action", help='reCAPTCHA v3: the expected action; "" for any.')
@click.option(
    "--captcha-fail",
    type=click.Choice(["open", "closed"]),
    help="Provider away: keep as spam (open) or refuse with 503 (closed).",
)
@click.option("--allow-cc", type=ON_OFF, help="Whether _cc may send copies to other addresses.")
@click.option("--honeypot", metavar="NAME", help="The honeypot field's name (_gotcha by default).")
@click.option("--max-links", metavar="N|off", help="More links than N: kept as spam.")
@click.option("--blocked-words", help='Words or phrases, comma-separated: kept as spam; "" none.')
@click.option(
    "--blocked-senders", help='Addresses or @domains, comma-separated: kept as spam; "" none.'
)
@click.option(
    "--blocked-addresses",
    help='Client IPs or ranges (203.0.113.0/24), comma-separated: kept as spam; "" none.',
)
@click.option(
    "--min-seconds",
    type=click.IntRange(0, 3600),
    help="With formrelay.js: sooner after page load is spam; 0 turns it off.",
)
@click.option("--akismet", type=ON_OFF, help="Whether Akismet judges submissions (with its key).")
@click.option(
    "--notify-limit",
    metavar="N|default",
    help="Notifications an hour at most (0: no ceiling); default: FORMRELAY_NOTIFY_LIMIT_PER_FORM.",
)
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
    spam_changes = _spam_changes(spam_options)
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


def _spam_changes(options: dict[str, object]) -> spam.SpamChanges:
    def number(name: str, off: str, off_value: int) -> int | None:
        raw = options.get(name)
        if raw is None:
            return None
        text = str(raw).strip().lower()
        if text == off:
            return off_value
        try:
            value = int(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not a whole number or {off}", param_hint=f"--{name.replace('_', '-')}"
            ) from None
        if value < 0:
            raise click.BadParameter(
                "must not be negative", param_hint=f"--{name.replace('_', '-')}"
            )
        return value

    fail = options.get("captcha_fail")
    return spam.SpamChanges(
        allowed_domains=_opt_str(options.get("allowed_domains")),
        allow_headerless=_opt_bool(options.get("allow_headerless")),
        rate_limit=_opt_str(options.get("rate_limit")),
        captcha_provider=_opt_str(options.get("captcha")),
        captcha_secret=_opt_str(options.get("captcha_secret")),
        captcha_threshold=options.get("captcha_threshold"),  # type: ignore[arg-type]
        captcha_action=_opt_str(options.get("captcha_action")),
        captcha_fail_open=None if fail is None else fail == "open",
        allow_cc=_opt_bool(options.get("allow_cc")),
        honeypot=_opt_str(options.get("honeypot")),
        max_links=number("max_links", "off", -1),
        blocked_words=_opt_str(options.get("blocked_words")),
        blocked_senders=_opt_str(options.get("blocked_senders")),
        blocked_addresses=_opt_str(options.get("blocked_addresses")),
        min_seconds=options.get("min_seconds"),  # type: ignore[arg-type]
        akismet=_opt_bool(options.get("akismet")),
        notify_limit=number("notify_limit", "default", -1),
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_bool(value: object) -> bool | None:
    return None if value is None else value == "on"


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


def _submissions(n: int) -> str:
    return f"{n} submission{'' if n == 1 else 's'}"


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


# -- submissions ---------------------------------------------------------------------------
@cli.group("submissions")
def submissions_group() -> None:
    """Read what forms received."""


@submissions_group.command("list")
@click.option("--form", "form_key", metavar="KEY", help="Only this form's submissions.")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many to show, newest first.",
)
@click.option("--spam", is_flag=True, help="Show the submissions marked as spam instead.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
@with_appcontext
def submissions_list(form_key: str | None, limit: int, spam: bool, as_json: bool) -> None:
    """List submissions, newest first, with the state of each delivery."""
    session = _session()
    try:
        only = forms.find_form(session, form_key) if form_key is not None else None
    except DomainError as exc:
        raise _fail(exc) from None
    rows = inbox.list_submissions(session, form=only, spam=spam, limit=limit)
    for s in rows:
        if as_json:
            record = inbox.submission_record(s, base_url=get_settings().base_url)
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            click.echo(_submission_line(s))
    if not rows and not as_json:
        click.echo(f"No {'spam' if spam else 'submissions'} yet.")
    db.session.rollback()


def _submission_line(s: Submission) -> str:
    """One line: id, time, form, the first fields, its files and where each delivery stands."""
    summary = "; ".join(f"{name}: {' '.join(value.split())}" for name, value in s.fields)
    if len(summary) > SUMMARY_CHARS:
        summary = summary[: SUMMARY_CHARS - 1] + "…"
    if s.is_spam:
        outcome = f"spam ({s.spam_reason})" if s.spam_reason else "spam"
    else:
        outcome = ", ".join(f"{d.target} {d.status}" for d in s.deliveries) or "nothing to send"
    files = f"  ({len(s.attachments)} file(s))" if s.attachments else ""
    return (
        f"{s.id}  {_stamp(s.created_at)}  {s.form.key}  {summary or '(empty)'}{files}  [{outcome}]"
    )


# -- export and import --------------------------------------------------------------------
@cli.command("export")
@click.option("--form", "form_key", required=True, metavar="KEY", help="The form to export.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(exports.FORMATS),
    default="csv",
    show_default=True,
    help="CSV (one column per field) or JSON (the API's records).",
)
@click.option(
    "--output",
    default="-",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    help="The file to write (replaced only once complete); default: standard output.",
)
@click.option("--spam", is_flag=True, help="Export the spam folder instead of the inbox.")
@click.option("--since", metavar="DAY", help="Only from this day (YYYY-MM-DD, UTC) on.")
@click.option("--until", metavar="DAY", help="Only up to this day (YYYY-MM-DD, UTC), included.")
@click.option("--search", "q", metavar="TEXT", help="Only what this search finds.")
@with_appcontext
def export_command(
    form_key: str,
    fmt: exports.Format,
    output: str,
    spam: bool,
    since: str | None,
    until: str | None,
    q: str | None,
) -> None:
    """Export a form's submissions, newest first, as the dashboard's download does.

    CSV columns are id, time (ISO 8601, UTC) and every field name the form has received, in
    the order they first arrived; a name sent more than once joins its values with ", "; a
    cell starting with = + - @ or a tab or CR gets a leading ' so that spreadsheets show it
    rather than run it.
    A progress bar goes to standard error when it is a terminal."""
    session = _session()
    params = {"folder": "spam" if spam else "inbox", "since": since, "until": until, "q": q}
    try:
        found = forms.find_form(session, form_key)
        f = exports.filter_from_params({k: v for k, v in params.items() if v}, form=found)
    except DomainError as exc:
        raise _fail(exc) from None
    export = exports.export_query(None, f)
    db.session.rollback()
    written = 0

    def count(n: int) -> None:
        nonlocal written
        written += n

    with exports.reading(db.engine) as reading:
        total = exports.count(reading, export) if sys.stderr.isatty() else 0
        with (
            click.open_file(output, "wb", atomic=output != "-") as out,
            _progress(total, "Exporting", count) as progress,
        ):
            for chunk in exports.export_chunks(
                reading, export, fmt, progress, base_url=get_settings().base_url
            ):
                out.write(chunk)
    if output != "-":
        click.echo(f"Exported {_submissions(written)} of form {found.key} to {output}.")


@cli.command("import")
@click.option("--form", "form_key", required=True, metavar="KEY", help="The form to import into.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option(
    "--time-column",
    metavar="NAME",
    help="The column holding each submission's time (default: the first of time, "
    "created_at, submitted_at, ..., date).",
)
@with_appcontext
def import_command(form_key: str, file: Path, time_column: str | None) -> None:
    """Import a CSV export (formrelay's, Formspree's, Netlify's, Basin's) as stored
    submissions of a form; nothing is delivered.

    Each column is a field, except the time, id-like columns (id, submission_id, uuid,
    form_id, form_name, site_url, site_id), which are skipped, and ip, user_agent and
    referrer, which are kept as the submission's metadata. Empty cells are left out. The
    file is checked first: a malformed row (wrong number of columns, a time that is not
    one, bytes that are not UTF-8, NUL) is reported by line number and nothing is
    imported; otherwise every row is, in one transaction."""
    session = _session()
    try:
        forms.find_form(session, form_key)
    except DomainError as exc:
        raise _fail(exc) from None
    db.session.rollback()
    with file.open("rb") as stream:
        try:
            with _progress(file.stat().st_size, "Checking", None) as read:
                checked = imports.check_file(stream, time_column=time_column, progress=read)
        except imports.ImportRefused as exc:
            raise click.ClickException(f"{file}: {exc.message}") from None
        session = _writing()
        found = forms.find_form(session, form_key)
        try:
            with _progress(checked.rows, "Importing", None) as stored:
                n = imports.import_file(
                    session, found, stream, time_column=time_column, progress=stored
                )
        except imports.ImportRefused as exc:
            db.session.rollback()
            raise click.ClickException(f"{file} changed while importing: {exc.message}") from None
        db.session.commit()
    layout = checked.layout
    click.echo(
        f"Imported {_submissions(n)} into form {found.name!r} (key {found.key}); nothing was "
        "delivered."
    )
    click.echo(f"Time from column {layout.header[layout.time_column]!r}.")
    click.echo("Fields: " + (", ".join(name for _, name in layout.fields) or "(none)"))
    if layout.skipped:
        click.echo("Skipped columns: " + ", ".join(layout.skipped))


@contextlib.contextmanager
def _progress(
    length: int, label: str, also: Callable[[int], None] | None
) -> Iterator[Callable[[int], None]]:
    """A progress callback: a bar on standard error when it is a terminal (and `length`
    is known), nothing otherwise; `also` is told every step as well."""

    def quiet(n: int) -> None:
        if also is not None:
            also(n)

    if not length or not sys.stderr.isatty():
        yield quiet
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:

        def step(n: int) -> None:
            bar.update(n)
            quiet(n)

        yield step


# -- mail and configuration ----------------------------------------------------------------
@cli.command("purge")
@with_appcontext
def purge_command() -> None:
    """Delete the submissions older than their form's retention (or
    FORMRELAY_RETENTION_DAYS), with their deliveries and files. Workers also do this
    once a day."""
    from ..worker.housekeeping import purge

    purged = purge(sessionmaker(bind=db.engine), get_settings())
    for p in purged:
        click.echo(f"Form {p.form_key}: deleted {p.deleted} submission(s) older than {p.days} days")
    click.echo(f"Deleted {sum(p.deleted for p in purged)} submission(s) in all.")


@cli.command("sweep")
@with_appcontext
def sweep_command() -> None:
    """Delete the stored files that no submission names (left by a crash between storing a
    file and committing its submission), older than an hour. Workers also do this once a
    day."""
    from ..worker.housekeeping import sweep

    swept = sweep(sessionmaker(bind=db.engine), get_settings())
    click.echo(f"Deleted {len(swept)} stored file(s) that no submission names.")


@cli.command("send-test-email")
@click.option("--to", "to", required=True, help="Where to send the test message.")
@with_appcontext
def send_test_email(to: str) -> None:
    """Send one message through the configured mail backend, now."""
    settings = get_settings()
    try:
        to = normalize_email(to, "--to")
    except DomainError:
        raise click.ClickException(f"{to!r} is not a valid e-mail address.") from None
    backend = create_backend("email", settings)
    try:
        result = backend.send(build_test_message(to, settings))
    except DeliveryFailed as exc:
        raise click.ClickException(f"sending failed: {exc}") from None
    finally:
        backend.close()
    click.echo(
        f"Sent a test message to {to} through {settings.mail_backend}"
        + (f" (id {result.provider_message_id})" if result.provider_message_id else "")
    )


@cli.group("config")
def config_group() -> None:
    """Inspect configuration."""


@config_group.command("check", with_appcontext=False)
@click.option(
    "--mail",
    is_flag=True,
    help="Also connect to the mail backend (SMTP: EHLO, login, NOOP; SES: GetAccount), "
    "sending nothing; exit with status 1 when that fails.",
)
@click.option(
    "--storage",
    "check_storage",
    is_flag=True,
    help="Also write, read and delete a probe file in the upload storage (the folder, or "
    "the S3 bucket); exit with status 1 when that fails.",
)
def config_check(mail: bool, check_storage: bool) -> None:
    """Validate the settings and print every effective value, secrets masked."""
    settings = load_settings()  # raises ConfigError, reported by main()
    width = max(len(k) for k in settings.masked())
    for var, value in settings.masked().items():
        click.echo(f"{var.ljust(width)}  {value}")
    click.echo("configuration OK")
    if mail:
        result = check_backend("email", settings)
        if not result.ok:
            raise click.ClickException(f"mail check failed ({result.backend}): {result.message}")
        click.echo(f"mail OK ({result.backend}): {result.message}")
    if check_storage:
        from ..storage import StorageError, get_storage

        try:
            checked = get_storage(settings).check()
        except StorageError as exc:
            raise click.ClickException(
                f"storage check failed ({settings.storage}): {exc}"
            ) from None
        click.echo(f"storage OK ({settings.storage}): {checked}")


# -- Amazon SES and the suppression list (their own module; cli.py is long enough) -----------
from .ses import ses_group, suppress_group  # noqa: E402  (it uses the helpers above)

cli.add_command(ses_group)
cli.add_command(suppress_group)
