"""What the command modules share: the session as the domain takes it, errors as click's."""

from __future__ import annotations

import logging
from datetime import datetime

import click
from sqlalchemy.orm import Session

from ..db import begin_write
from ..extensions import db
from ..services.errors import DomainError

ON_OFF = click.Choice(["on", "off"])


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


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _submissions(n: int) -> str:
    return f"{n} submission{'' if n == 1 else 's'}"
