"""Which requests write: their transactions begin as writers (see db.write_from_start).

On SQLite a transaction that reads and then writes is refused the write ("database is
locked") when another writer committed in between, as the committer does many times a
second under public traffic; one that takes the write lock up front waits its turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from ..db import write_from_start
from ..extensions import db

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Blueprints whose views take the write lock themselves, and only when they are ready to:
# the public endpoint hands its writes to group commit, which takes the lock for its
# batch; the SNS hook checks a message's signature (a fetch) before it writes.
OWN_TRANSACTIONS = frozenset({"public", "hooks"})

View = TypeVar("View", bound=Callable[..., Any])


def writes(view: View) -> View:
    """Mark a view that writes on a GET (a link followed from an e-mail)."""
    view.formrelay_writes = True  # type: ignore[attr-defined]
    return view


def _begin_request() -> None:
    if request.blueprint in OWN_TRANSACTIONS:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if request.method not in SAFE_METHODS or getattr(view, "formrelay_writes", False):
        session = db.session()
        write_from_start(session)
        g.formrelay_writer = session


def _end_request(exc: BaseException | None) -> None:
    # The session outlives the request where the app context does (a test's, a command's).
    session = g.pop("formrelay_writer", None)
    if session is not None:
        write_from_start(session, False)


def init_app(app: Flask) -> None:
    app.before_request(_begin_request)
    app.teardown_request(_end_request)
