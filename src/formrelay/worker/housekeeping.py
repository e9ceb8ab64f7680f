"""Daily housekeeping in every worker: the retention purge, the sweep of orphan files and
the deletion of expired sign-ins.

Both are idempotent, so several workers doing it each day only repeat a cheap check.
`formrelay purge` and `formrelay sweep` run the same functions on demand.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from ..db import begin_write
from ..models import utcnow
from ..services import attachments, retention, sign_ins
from ..settings import Settings
from ..storage import bind_session_storage, get_storage

log = logging.getLogger("formrelay.worker")

DAY_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class Housework:
    purged: list[retention.Purged]
    swept: list[str]
    sign_ins: int


def purge(
    session_factory: sessionmaker[Session], settings: Settings, *, now: datetime | None = None
) -> list[retention.Purged]:
    """Delete the submissions past their form's retention, with their files (after the
    commit)."""
    with session_factory() as session:
        bind_session_storage(session.info, get_storage(settings))
        begin_write(session)
        purged = retention.purge_expired(session, settings.retention_days, now=now)
        session.commit()
    return purged


def sweep(
    session_factory: sessionmaker[Session], settings: Settings, *, now: datetime | None = None
) -> list[str]:
    """Delete the stored files no submission names (older than the sweep's grace)."""
    with session_factory() as session:
        swept = attachments.sweep_orphans(session, get_storage(settings), now=now)
        session.rollback()
    return swept


def forget_sign_ins(session_factory: sessionmaker[Session], *, now: datetime) -> int:
    """Delete the sign-ins past their expiry (their cookies open nothing already)."""
    with session_factory() as session:
        begin_write(session)
        deleted = sign_ins.delete_expired(session, now)
        session.commit()
    return deleted


class Housekeeping:
    """Runs the purge, the sweep and the sign-ins' clean-up at the worker's start and then
    once a day."""

    def __init__(self, session_factory: sessionmaker[Session], settings: Settings) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.next_at = 0.0  # monotonic; at once

    def maybe_run(self) -> Housework | None:
        if time.monotonic() < self.next_at:
            return None
        self.next_at = time.monotonic() + DAY_SECONDS
        try:
            done = Housework(
                purge(self.session_factory, self.settings, now=utcnow()),
                sweep(self.session_factory, self.settings, now=utcnow()),
                forget_sign_ins(self.session_factory, now=utcnow()),
            )
        except Exception:
            # Tried again in an hour rather than a day; deliveries go on meanwhile.
            self.next_at = time.monotonic() + 3600.0
            log.exception("housekeeping (purge, sweep, sign-ins) failed; again in an hour")
            return None
        for p in done.purged:
            log.info("retention: deleted %d submissions of form %s (older than %d days)",
                     p.deleted, p.form_key, p.days)  # fmt: skip
        if done.swept:
            log.info("sweep: deleted %d stored files no submission names", len(done.swept))
        if done.sign_ins:
            log.info("sign-ins: deleted %d expired", done.sign_ins)
        return done
