"""`formrelay purge` and `sweep`: what workers also do once a day, on demand."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy.orm import sessionmaker

from ..extensions import db
from ..settings import get_settings


@click.command("purge")
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


@click.command("sweep")
@with_appcontext
def sweep_command() -> None:
    """Delete the stored files that no submission names (left by a crash between storing a
    file and committing its submission), older than an hour. Workers also do this once a
    day."""
    from ..worker.housekeeping import sweep

    swept = sweep(sessionmaker(bind=db.engine), get_settings())
    click.echo(f"Deleted {len(swept)} stored file(s) that no submission names.")
