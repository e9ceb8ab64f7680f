"""`formrelay serve`: the web app and a worker in one process, for development."""

from __future__ import annotations

import threading

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import DBAPIError

from ..extensions import db
from ..ingest import group_commit
from ..services import accounts
from ..services.errors import DomainError
from ..settings import Settings, get_settings, init_app
from ..worker import make_worker
from .common import _configure_logging, _fail, _writing


@click.command()
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
