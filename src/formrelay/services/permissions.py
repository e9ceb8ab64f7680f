"""Authorization: the one place that decides what an actor may see and change.

Views load every owned object through these helpers and never compare owner ids
themselves. What the actor may not see does not exist for them: the helpers raise the
same NotFound/FormNotFound as for a key that exists nowhere, so keys cannot be probed.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from ..models import Delivery, Form, Submission, User
from .errors import FormNotFound, NotFound


def can_see(actor: User, form: Form) -> bool:
    return actor.is_admin or form.owner_id == actor.id


def owned_forms(actor: User) -> Select[Form]:
    """The forms the actor may see (all of them for an admin), to filter and order further."""
    query = select(Form)
    return query if actor.is_admin else query.where(Form.owner_id == actor.id)


def load_form(session: Session, actor: User, key: str) -> Form:
    """The form with this key, if the actor may see it. Raises FormNotFound."""
    form = session.scalar(select(Form).where(Form.key == key))
    if form is None or not can_see(actor, form):
        raise FormNotFound("There is no form with this key.")
    return form


def load_submission(session: Session, actor: User, submission_id: int) -> Submission:
    """The submission with this id, if the actor may see its form. Raises NotFound."""
    submission = session.get(Submission, submission_id)
    if submission is None or not can_see(actor, submission.form):
        raise NotFound("There is no such submission.")
    return submission


def load_delivery(session: Session, actor: User, delivery_id: int) -> Delivery:
    """A submission's delivery, if the actor may see the submission; the dashboard's own
    mail (no submission) only for admins. Raises NotFound."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFound("There is no such delivery.")
    submission = delivery.submission
    if submission is None and not actor.is_admin:
        raise NotFound("There is no such delivery.")
    if submission is not None and not can_see(actor, submission.form):
        raise NotFound("There is no such delivery.")
    return delivery


def require_admin(actor: User) -> None:
    """Raise NotFound unless the actor is an admin (admin pages do not exist for others)."""
    if not actor.is_admin:
        raise NotFound("There is nothing at this address.")
