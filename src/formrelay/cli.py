"""The `formrelay` command: Flask's CLI plus formrelay's own commands."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, NoAppException, ScriptInfo, with_appcontext
from sqlalchemy.orm import Session

from . import create_app
from .db import begin_write
from .delivery import DeliveryFailed, create_backend
from .delivery.message import build_test_message
from .extensions import db
from .ingest import group_commit
from .models import Form, User, utcnow
from .services import accounts, forms
from .services.addresses import normalize_email
from .services.errors import DomainError
from .services.workers import outbox_status
from .settings import ConfigError, get_settings, load_settings
from .worker import make_worker

DEMO_FORM_NAME = "Demo form"
DEMO_RECIPIENT = "you@example.com"


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
@click.option("--port", default=5000, show_default=True, envvar="PORT", help="Port (or $PORT).")
@with_appcontext
def serve(host: str, port: int) -> None:
    """Run the web app and a delivery worker in one process (development)."""
    from werkzeug.serving import run_simple

    _configure_logging()
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    worker = make_worker(app)
    group_commit(app).after_commit(worker.wake)  # deliver now rather than at the next poll
    thread = threading.Thread(target=worker.run, name="formrelay-worker", daemon=True)
    thread.start()
    public = get_settings().base_url
    click.echo(
        f"formrelay is serving http://{host}:{port}"
        + ("" if public == f"http://{host}:{port}" else f" (public URL {public})")
        + ", with a worker in-process"
    )
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        worker.stop()
        thread.join(timeout=30)


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
    worker = make_worker(current_app._get_current_object())  # type: ignore[attr-defined]
    if once:
        outcomes = worker.drain()
        click.echo(f"{len(outcomes)} deliveries processed")
        return
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
    """Create a user."""
    try:
        created = accounts.create_user(_writing(), email, admin=admin)
    except DomainError as exc:
        raise _fail(exc) from None
    db.session.commit()
    click.echo(f"Created {'admin' if admin else 'user'} {created.email}")


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
    help="The owner's e-mail; default: the first admin, created if there is none.",
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
    _writing()
    try:
        owner = _owner(owner_email, default_email=recipients[0])
        created = forms.create_form(
            _session(),
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


def _owner(owner_email: str | None, *, default_email: str) -> User:
    """The named user, else the first admin, else a new admin with `default_email`."""
    if owner_email:
        found = accounts.find_user(_session(), owner_email)
        if found is None:
            raise click.ClickException(
                f"No user {owner_email}; create one with `formrelay user create --email ...`."
            )
        return found
    admin = accounts.first_admin(_session())
    if admin is not None:
        return admin
    existing = accounts.find_user(_session(), default_email)
    if existing is not None:
        # Promoting an existing member to admin behind the operator's back would be a surprise.
        raise click.ClickException(
            f"There is no admin to own the form and {existing.email} is a user who is not one; "
            "create an admin with `formrelay user create --email E --admin`."
        )
    return accounts.create_user(_session(), default_email, admin=True)


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


@form.command("demo")
@with_appcontext
def form_demo() -> None:
    """Create the demo form once, then print its URL and a paste-ready HTML snippet."""
    from sqlalchemy import select

    demo = _writing().scalar(select(Form).where(Form.name == DEMO_FORM_NAME).limit(1))
    if demo is None:
        owner = _owner(None, default_email=DEMO_RECIPIENT)
        demo = forms.create_form(
            _session(), owner, name=DEMO_FORM_NAME, recipients=[DEMO_RECIPIENT], verified=True
        )
        db.session.commit()
    url = endpoint_url(demo)
    click.echo(
        f"\nDemo form: {url}\nPaste this into any web page and submit it; the "
        f"notification for {DEMO_RECIPIENT} is printed below by the console backend.\n"
    )
    click.echo(snippet(url))


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


# -- mail and configuration ----------------------------------------------------------------
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
def config_check() -> None:
    """Validate the settings and print every effective value, secrets masked."""
    settings = load_settings()  # raises ConfigError, reported by main()
    width = max(len(k) for k in settings.masked())
    for var, value in settings.masked().items():
        click.echo(f"{var.ljust(width)}  {value}")
    click.echo("configuration OK")
