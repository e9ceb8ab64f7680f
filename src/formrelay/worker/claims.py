"""Leases on the outbox: claim due deliveries, hand back the untried, renew the held.

Claiming is one UPDATE ... WHERE id IN (SELECT ... [FOR UPDATE SKIP LOCKED]) RETURNING, so
any number of workers on PostgreSQL never claim a row twice, and on SQLite the single
writer makes the same statement atomic. A claim names its worker (`leased_by`) and counts an
attempt; the pair (worker, attempts) identifies it, so an outcome is recorded only by the
claim that is still current. A row is due again when its worker stops beating (see
heartbeat.py), or, should the database have been unreachable for the beats, when its lease
runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Select, Table, and_, exists, or_, select, union, update
from sqlalchemy.orm import Session

from ..db import begin_write, locks_whole_database
from ..models import Delivery, DeliveryStatus, WorkerHeartbeat
from .heartbeat import WorkerIdentity, record_beat

S = DeliveryStatus
# Core, not ORM, statements for the outbox's bookkeeping: the ORM's bulk UPDATE path took
# more of a worker's time per message than building the message did.
DELIVERIES = cast(Table, Delivery.__table__)
D = DELIVERIES.c
_WORKERS = cast(Table, WorkerHeartbeat.__table__)
W = _WORKERS.c


@dataclass(frozen=True)
class Claim:
    """One delivery leased to one worker, for its `attempts`-th attempt."""

    delivery_id: int
    worker_id: str
    attempts: int


def orphaned(now: datetime, grace_seconds: float) -> ColumnElement[bool]:
    """Rows being sent by a worker that has not beaten within the grace period."""
    alive = exists().where(
        W.id == D.leased_by, W.heartbeat_at > now - timedelta(seconds=grace_seconds)
    )
    return and_(D.status == S.SENDING, D.leased_by.is_not(None), ~alive)


def lease_expired(now: datetime) -> ColumnElement[bool]:
    """Rows being sent whose lease has run out."""
    return and_(D.status == S.SENDING, D.lease_expires_at <= now)


def _first_due_sqlite(now: datetime, grace_seconds: float, limit: int) -> Select[tuple[int]]:
    """The first `limit` due rows by next_attempt_at, as one ORDER BY over `_due` would
    give them, but each kind of due row read from its index in order and no further than
    `limit`: SQLite's plan for the OR (a MULTI-INDEX OR, then a sort) read every due row
    for each claim, under the write lock, a few ms with a 100,000-row backlog while group
    commit waited (the bench's worker run: 1,554 submissions/s with that backlog, 2,137
    without)."""
    kinds = [
        and_(D.status == S.PENDING, D.next_attempt_at <= now),
        and_(D.status == S.FAILED, D.next_attempt_at <= now),
        lease_expired(now),
        orphaned(now, grace_seconds),
    ]
    each = [
        select(D.id, D.next_attempt_at)
        .where(kind)
        .order_by(D.next_attempt_at)
        .limit(limit)
        .subquery()
        for kind in kinds
    ]
    # UNION, not ALL: a dead worker's row whose lease ran out is of two kinds.
    first = union(*(select(q.c.id, q.c.next_attempt_at) for q in each)).subquery()
    return select(first.c.id).order_by(first.c.next_attempt_at).limit(limit)


def _due(now: datetime, grace_seconds: float) -> ColumnElement[bool]:
    return or_(
        and_(D.status.in_([S.PENDING, S.FAILED]), D.next_attempt_at <= now),
        lease_expired(now),
        orphaned(now, grace_seconds),
    )


def claim_due_deliveries(
    session: Session,
    *,
    worker: WorkerIdentity,
    limit: int,
    lease_seconds: float,
    grace_seconds: float,
    now: datetime,
    max_attempts: int,
) -> list[Claim]:
    """Lease up to `limit` due deliveries to `worker` and commit, its heartbeat with them.

    A row abandoned (lease expired or worker dead) after its last allowed attempt is given
    up (`dead`) instead: a message that kills every worker sending it must not be retried
    for ever.
    """
    due = _due(now, grace_seconds)
    if not locks_whole_database(session):  # PostgreSQL: workers skip each other's rows
        candidates = (
            select(D.id)
            .where(due)
            .order_by(D.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    else:
        candidates = _first_due_sqlite(now, grace_seconds, limit)
        # SQLite has one write lock for the whole database, and a transaction that has read
        # and then writes cannot wait for it (see db.begin_write): an idle poll looks first,
        # and takes the lock only when there is something to claim.
        nothing_due = session.scalar(select(D.id).where(due).limit(1)) is None
        session.rollback()  # the claim must begin as a writer
        if nothing_due:
            return []
    begin_write(session)
    # Alive as of this claim, in the claim's own transaction: no other worker can see the
    # rows leased before it sees their worker's beat.
    record_beat(session, worker, now)
    abandoned = or_(lease_expired(now), orphaned(now, grace_seconds))
    session.execute(
        update(DELIVERIES)
        .where(abandoned, D.attempts >= max_attempts)
        .values(
            status=S.DEAD,
            lease_expires_at=None,
            leased_by=None,
            updated_at=now,
            last_error=f"gave up after {max_attempts} attempts: "
            "the worker stopped while sending, each time",
        )
    )
    rows = session.execute(
        update(DELIVERIES)
        .where(D.id.in_(candidates.scalar_subquery()))
        .values(
            status=S.SENDING,
            leased_by=worker.id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=D.attempts + 1,
            updated_at=now,
        )
        .returning(D.id, D.attempts)
    ).all()
    session.commit()
    claims = [Claim(row.id, worker.id, row.attempts) for row in rows]
    return sorted(claims, key=lambda c: c.delivery_id)


def current(claim: Claim) -> ColumnElement[bool]:
    """The row of `claim`, as long as the claim is still its current one."""
    return and_(
        D.id == claim.delivery_id,
        D.status == S.SENDING,
        D.leased_by == claim.worker_id,
        D.attempts == claim.attempts,
    )


def release(session: Session, claims: list[Claim], *, now: datetime) -> None:
    """Hand back leased rows not yet tried, so another worker takes them at once."""
    if not claims:
        return
    begin_write(session)
    for claim in claims:
        session.execute(
            update(DELIVERIES)
            .where(current(claim))
            .values(
                status=S.PENDING,
                lease_expires_at=None,
                leased_by=None,
                attempts=D.attempts - 1,
                next_attempt_at=now,
            )
        )
    session.commit()
