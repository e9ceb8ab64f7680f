"""What the admin pages list: every user and every form with their counts, and the outbox.

Read-only; the changes an admin makes are in accounts (users) and forms (enabling).
Each function raises NotFound unless the actor is an admin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryStatus, Form, Submission, SubmissionCount, User
from . import permissions
from .errors import NotFound
from .workers import OutboxStatus, outbox_status


@dataclass(frozen=True)
class UserRow:
    user: User
    forms: int


def list_users(session: Session, actor: User) -> Sequence[UserRow]:
    """Every user, by address, with how many forms each owns."""
    permissions.require_admin(actor)
    counts = select(Form.owner_id, func.count().label("forms")).group_by(Form.owner_id).subquery()
    rows = session.execute(
        select(User, func.coalesce(counts.c.forms, 0))
        .outerjoin(counts, counts.c.owner_id == User.id)
        .order_by(User.email)
    )
    return [UserRow(user, int(n)) for user, n in rows]


def load_user(session: Session, actor: User, user_id: int) -> User:
    """The user with this id. Raises NotFound (also for an actor who is not an admin)."""
    permissions.require_admin(actor)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("There is no such user.")
    return user


@dataclass(frozen=True)
class FormRow:
    form: Form
    owner: str
    submissions: int
    spam: int
    last_submission_at: datetime | None


def list_forms(session: Session, actor: User) -> Sequence[FormRow]:
    """Every form, newest first, with its owner's address and its submission counts."""
    permissions.require_admin(actor)
    # Totals from the rollup (services.stats reads it too): a scan of every submission is
    # what it exists to avoid. The last time is a seek on each form's newest index entry.
    counts = (
        select(
            SubmissionCount.form_id,
            func.sum(SubmissionCount.n).label("total"),
            func.sum(SubmissionCount.n).filter(SubmissionCount.is_spam.is_(True)).label("spam"),
        )
        .group_by(SubmissionCount.form_id)
        .subquery()
    )
    last = (
        select(func.max(Submission.created_at))
        .where(Submission.form_id == Form.id)
        .correlate(Form)
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            Form,
            User.email,
            func.coalesce(counts.c.total, 0),
            func.coalesce(counts.c.spam, 0),
            last,
        )
        .join(User, User.id == Form.owner_id)
        .outerjoin(counts, counts.c.form_id == Form.id)
        .order_by(Form.created_at.desc(), Form.id.desc())
    )
    return [
        FormRow(form, owner, int(total), int(spam), last) for form, owner, total, spam, last in rows
    ]


@dataclass(frozen=True)
class SystemStatus:
    outbox: OutboxStatus
    # Deliveries by status, every status present (0 when none).
    deliveries: dict[str, int]
    now: datetime


def system_status(
    session: Session, actor: User, *, now: datetime, grace_seconds: float
) -> SystemStatus:
    """The workers and the outbox (services.workers) with the deliveries counted by status."""
    permissions.require_admin(actor)
    counted: dict[str, int] = {
        status: int(n)
        for status, n in session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        )
    }
    deliveries = {str(s): counted.get(s, 0) for s in DeliveryStatus}
    return SystemStatus(
        outbox_status(session, now=now, grace_seconds=grace_seconds), deliveries, now
    )


@dataclass(frozen=True)
class Holdings:
    forms: int
    submissions: int


def user_holdings(session: Session, actor: User, user: User) -> Holdings:
    """How many forms `user` owns and how many submissions those hold: what deleting the
    user deletes with them."""
    permissions.require_admin(actor)
    forms = session.scalar(select(func.count()).select_from(Form).where(Form.owner_id == user.id))
    submissions = session.scalar(
        select(func.count())
        .select_from(Submission)
        .join(Form, Form.id == Submission.form_id)
        .where(Form.owner_id == user.id)
    )
    return Holdings(int(forms or 0), int(submissions or 0))
