"""`formrelay worker`: run a delivery worker, or show the workers and the outbox."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from ..extensions import db
from ..models import utcnow
from ..services.workers import outbox_status
from ..settings import get_settings
from ..worker import make_worker
from ..worker.priority import lower_priority
from .common import _configure_logging, _session, _stamp


@click.group("worker", cls=AppGroup, invoke_without_command=True)
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


def _ago(delta: timedelta) -> str:
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
