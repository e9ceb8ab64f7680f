"""What the delivery workers are doing: who is alive, and what waits in the outbox.

`formrelay worker status`, `/readyz` and (later) the dashboard's status page read this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryStatus, WorkerHeartbeat

S = DeliveryStatus


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    started_at: datetime
    last_beat: datetime
    alive: bool  # beat within the grace period


@dataclass(frozen=True)
class OutboxStatus:
    workers: list[WorkerInfo]  # most recent beat first
    due: int  # pending or failed rows whose time has come
    scheduled: int  # failed rows waiting for their next attempt
    sending: int  # leased to a worker now
    oldest_due: datetime | None  # when the longest-waiting due row became due

    @property
    def alive(self) -> list[WorkerInfo]:
        return [w for w in self.workers if w.alive]

    def oldest_due_age(self, now: datetime) -> timedelta | None:
        return None if self.oldest_due is None else max(now - self.oldest_due, timedelta(0))


def outbox_status(session: Session, *, now: datetime, grace_seconds: float) -> OutboxStatus:
    """The registered workers (alive when they beat within `grace_seconds`) and the outbox."""
    cutoff = now - timedelta(seconds=grace_seconds)
    workers = [
        WorkerInfo(w.id, w.host, w.pid, w.started_at, w.heartbeat_at, w.heartbeat_at > cutoff)
        for w in session.scalars(
            select(WorkerHeartbeat).order_by(WorkerHeartbeat.heartbeat_at.desc())
        )
    ]
    waiting = Delivery.status.in_([S.PENDING, S.FAILED])
    due, oldest = session.execute(
        select(func.count(), func.min(Delivery.next_attempt_at)).where(
            waiting, Delivery.next_attempt_at <= now
        )
    ).one()
    scheduled = session.scalar(select(func.count()).where(waiting, Delivery.next_attempt_at > now))
    sending = session.scalar(select(func.count()).where(Delivery.status == S.SENDING))
    return OutboxStatus(workers, int(due), int(scheduled or 0), int(sending or 0), oldest)
