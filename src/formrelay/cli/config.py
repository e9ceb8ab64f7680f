"""`formrelay config check` and `send-test-email`: the settings, the mail and the storage."""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from ..delivery import DeliveryFailed, check_backend, create_backend
from ..delivery.message import build_test_message
from ..services.addresses import normalize_email
from ..services.errors import DomainError
from ..settings import get_settings, load_settings


@click.command("send-test-email")
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


@click.group("config", cls=AppGroup)
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
