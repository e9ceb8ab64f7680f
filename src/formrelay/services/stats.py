"""How forms are doing: submissions in total and per day, the last one, delivery health.

Each statistic is one grouped query over every form asked about (never one per form), shaped
to run on the index ix_submissions_form_spam_created (form_id, is_spam, created_at): the
dashboard's form list stays fast at a million submissions. Spam is not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, cast, false, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from ..models import Delivery, DeliveryStatus, Submission, utcnow

DAYS = 30  # the window of the sparkline and of "last 30 days"


@dataclass
class FormStats:
    """One form's figures. `daily` has one count per UTC day, oldest first, today last."""

    total: int = 0
    recent: int = 0  # in the DAYS days of `daily`
    daily: list[int] = field(default_factory=lambda: [0] * DAYS)
    last_at: datetime | None = None
    failed: int = 0
    dead: int = 0


def window_start(now: datetime | None = None, days: int = DAYS) -> datetime:
    """The first moment counted as recent: midnight UTC `days - 1` days before today."""
    today = (now or utcnow()).astimezone(UTC).date()
    return datetime.combine(today - timedelta(days=days - 1), time(), tzinfo=UTC)


def form_stats(
    session: Session, form_ids: Sequence[int], *, now: datetime | None = None, days: int = DAYS
) -> dict[int, FormStats]:
    """The figures of each form in `form_ids` (every id gets an entry, zeros when idle).

    Three grouped queries in all, whatever the number of forms: totals with the last
    submission's time, per-day counts since window_start(now), and failed/dead deliveries.
    """
    stats = {form_id: FormStats(daily=[0] * days) for form_id in form_ids}
    if not stats:
        return stats
    ids = list(stats)
    inbox = (Submission.form_id.in_(ids), Submission.is_spam == false())

    totals = session.execute(
        select(Submission.form_id, func.count(), func.max(Submission.created_at))
        .where(*inbox)
        .group_by(Submission.form_id)
    )
    for form_id, count, last in totals:
        stats[form_id].total = count
        stats[form_id].last_at = _aware(last)

    start = window_start(now, days)
    first_day = start.date()
    day = _utc_day(session, Submission.created_at).label("day")
    per_day = session.execute(
        select(Submission.form_id, day, func.count())
        .where(*inbox, Submission.created_at >= start)
        .group_by(Submission.form_id, day)
    )
    for form_id, on, count in per_day:
        index = (_as_date(on) - first_day).days
        if 0 <= index < days:  # a clock a little behind the database's puts rows "tomorrow"
            stats[form_id].daily[index] += count
            stats[form_id].recent += count

    health = session.execute(
        select(Submission.form_id, Delivery.status, func.count())
        .join(Delivery, Delivery.submission_id == Submission.id)
        .where(
            Submission.form_id.in_(ids),
            Delivery.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.DEAD.value]),
        )
        .group_by(Submission.form_id, Delivery.status)
    )
    for form_id, status, count in health:
        if status == DeliveryStatus.FAILED:
            stats[form_id].failed = count
        else:
            stats[form_id].dead = count
    return stats


def sparkline_points(daily: Sequence[int], *, width: int = 120, height: int = 24) -> str:
    """The `points` of an SVG polyline drawing `daily` left to right, the busiest day at the
    top, an idle day on the bottom edge (1 unit of margin so the stroke shows)."""
    if not daily:
        return ""
    peak = max(daily) or 1
    step = width / max(len(daily) - 1, 1)
    usable = height - 2
    return " ".join(
        f"{round(i * step, 1):g},{round(1 + usable - usable * count / peak, 1):g}"
        for i, count in enumerate(daily)
    )


def _utc_day(session: Session, column: InstrumentedAttribute[datetime]) -> ColumnElement[object]:
    """The UTC calendar day of a timestamp, in the database's own dialect."""
    if session.get_bind().dialect.name == "postgresql":
        # timestamptz: the day in UTC, whatever the connection's time zone.
        return cast(func.timezone("UTC", column), Date)
    # SQLite keeps UTC text without an offset (models.UTCDateTime).
    return func.date(column)


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
