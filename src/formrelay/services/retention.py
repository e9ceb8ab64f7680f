"""Retention: old submissions go, with their deliveries and files.

A form's `retention_days` wins; forms without one follow FORMRELAY_RETENTION_DAYS, where 0
keeps everything. `formrelay purge` runs it, and every worker once a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Form, utcnow
from .inbox import delete_older_than


@dataclass(frozen=True)
class Purged:
    form_key: str
    days: int
    deleted: int


def retention_days(form: Form, default_days: int) -> int:
    """The days a form keeps its submissions; 0 for ever."""
    return form.retention_days if form.retention_days is not None else default_days


def purge_expired(
    session: Session, default_days: int, *, now: datetime | None = None
) -> list[Purged]:
    """Delete, form by form, the submissions older than the form's retention (not
    committed: the caller commits, which also removes their files). Returns what went."""
    moment = now or utcnow()
    purged: list[Purged] = []
    for form in session.scalars(select(Form).order_by(Form.id)).all():
        days = retention_days(form, default_days)
        if days <= 0:
            continue
        deleted = delete_older_than(session, form.id, moment - timedelta(days=days))
        if deleted:
            purged.append(Purged(form.key, days, deleted))
    return purged
