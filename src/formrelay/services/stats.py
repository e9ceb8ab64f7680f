"""How forms are doing: submissions in total and per day, the last one, delivery health.

Two queries over every form asked about, never one per form: the submissions' figures
(totals and daily counts from the per-day rollup, models.SubmissionCount; the last time
from the index ix_submissions_form_spam_created), and the failed or dead deliveries (from
ix_deliveries_due, which holds each delivery's form).
Spam is not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import cast

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryStatus, Form, Submission, SubmissionCount, utcnow

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

    Two queries in all, whatever the number of forms: totals, the last submission's time
    and per-day counts since window_start(now); then failed and dead deliveries.
    """
    stats = {form_id: FormStats(daily=[0] * days) for form_id in form_ids}
    if not stats:
        return stats
    ids = list(stats)

    # Totals and days from the rollup (models.SubmissionCount, kept by triggers): one row
    # per form and UTC day, so a 900k-row form costs its few hundred days, not its rows.
    # The last time is a seek to the end of the form's inbox range of
    # ix_submissions_form_spam_created.
    first_day = window_start(now, days).date()
    inbox = (SubmissionCount.form_id.in_(ids), SubmissionCount.is_spam == false())
    totals = (
        select(SubmissionCount.form_id, func.sum(SubmissionCount.n).label("total"))
        .where(*inbox)
        .group_by(SubmissionCount.form_id)
        .subquery()
    )
    # The 30 sums run over the window's rows only (a primary-key range per form): over
    # every day of a year-old busy form they cost more than all the rest (measured, SQLite).
    recent = (
        select(
            SubmissionCount.form_id,
            *[
                func.sum(SubmissionCount.n).filter(SubmissionCount.day == first_day + timedelta(n))
                for n in range(days)
            ],
        )
        .where(*inbox, SubmissionCount.day >= first_day)
        .group_by(SubmissionCount.form_id)
        .subquery()
    )
    last = (
        select(func.max(Submission.created_at))
        .where(Submission.form_id == Form.id, Submission.is_spam == false())
        .correlate(Form)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Form.id, last, totals.c.total, *recent.c[1:])
        .outerjoin(totals, totals.c.form_id == Form.id)
        .outerjoin(recent, recent.c.form_id == Form.id)
        .where(Form.id.in_(ids))
    )
    for form_id, last_at, total, *daily in rows:
        figures = stats[form_id]
        figures.total, figures.last_at = total or 0, _aware(last_at)
        figures.daily = [count or 0 for count in daily]
        figures.recent = sum(figures.daily)

    # The few failed and dead deliveries, counted per form from ix_deliveries_due alone
    # (it holds each delivery's form): no delivery row, no submission is read.
    health = session.execute(
        select(Delivery.form_id, Delivery.status, func.count())
        .where(
            Delivery.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.DEAD.value]),
            Delivery.form_id.in_(ids),
        )
        .group_by(Delivery.form_id, Delivery.status)
    )
    for form_id, status, count in health:
        figures = stats[cast(int, form_id)]  # one of `ids`: never None
        if status == DeliveryStatus.FAILED:
            figures.failed = count
        else:
            figures.dead = count
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


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
