"""`formrelay ses` (set-up and status of Amazon SES) and `formrelay suppress` (the list)."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from .cli import _fail, _session, _writing
from .extensions import db
from .services import suppressions
from .services.errors import DomainError


# -- the suppression list ---------------------------------------------------------------------
@click.group("suppress")
def suppress_group() -> None:
    """The suppression list: addresses formrelay sends nothing to.

    SES's bounces and complaints fill it by themselves (POST /hooks/ses); with SMTP,
    add the addresses that bounce permanently here."""


@suppress_group.command("add")
@click.argument("address")
@click.option(
    "--reason",
    type=click.Choice(suppressions.REASONS),
    default="manual",
    show_default=True,
    help="Why: a permanent bounce, a complaint, or by hand.",
)
@click.option("--detail", help="A note kept with it (a bounce's diagnostic, say).")
@with_appcontext
def suppress_add(address: str, reason: str, detail: str | None) -> None:
    """Stop all mail to ADDRESS; the deliveries waiting for it end dead at once."""
    session = _writing()
    try:
        entry, ended = suppressions.suppress(
            session, address, reason=reason, source="cli", detail=detail
        )
    except DomainError as exc:
        raise _fail(exc) from None
    session.commit()
    click.echo(
        f"Suppressed {entry.address} ({entry.reason}); "
        f"{ended} waiting {'delivery' if ended == 1 else 'deliveries'} ended."
    )


@suppress_group.command("remove")
@click.argument("address")
@with_appcontext
def suppress_remove(address: str) -> None:
    """Let mail reach ADDRESS again (deliveries already dead stay so)."""
    session = _writing()
    try:
        entry = suppressions.unsuppress(session, address)
    except DomainError as exc:
        raise _fail(exc) from None
    session.commit()
    click.echo(f"Removed {entry.address} from the suppression list.")


@suppress_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
@with_appcontext
def suppress_list(as_json: bool) -> None:
    """Every suppressed address, newest first."""
    rows = suppressions.list_suppressions(_session())
    db.session.rollback()
    for s in rows:
        if as_json:
            line = {
                "address": s.address,
                "reason": s.reason,
                "source": s.source,
                "detail": s.detail,
                "created_at": s.created_at.isoformat(),
            }
            click.echo(json.dumps(line, ensure_ascii=False))
        else:
            when = s.created_at.strftime("%Y-%m-%d %H:%M UTC")
            detail = f"  {s.detail}" if s.detail else ""
            click.echo(f"{s.address}  {s.reason}  {s.source}  {when}{detail}")
    if not rows and not as_json:
        click.echo("No address is suppressed.")
