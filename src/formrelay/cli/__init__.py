"""The `formrelay` command: Flask's CLI plus formrelay's own commands.

Each command group lives in its own module and is added here; cli/common.py holds what they
share, so that no module of this package imports this one."""

from __future__ import annotations

import contextlib
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup, NoAppException, ScriptInfo

from .. import create_app
from ..settings import ConfigError
from .config import config_group, send_test_email
from .forms import form
from .housekeeping import purge_command, sweep_command
from .serve import serve
from .ses import ses_group, suppress_group
from .submissions import export_command, import_command, submissions_group
from .users import user
from .worker import worker_command


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


for command in (
    serve,
    worker_command,
    user,
    form,
    submissions_group,
    export_command,
    import_command,
    purge_command,
    sweep_command,
    send_test_email,
    config_group,
    ses_group,
    suppress_group,
):
    cli.add_command(command)


def main() -> None:
    """Console entry point: a bad setting is one clear line, not a traceback."""
    try:
        cli.main(prog_name="formrelay")
    except ConfigError as exc:
        click.echo(f"formrelay: configuration error: {exc}", err=True)
        sys.exit(2)
