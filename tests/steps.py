"""Steps many tests take: post a submission as a browser would, read back the outbox as
committed, name what a worker did."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select

from formrelay.extensions import db
from formrelay.models import Delivery, Form
from formrelay.worker import Outcome


def submit(client: FlaskClient, form: Form, **fields: str) -> None:
    """Post `fields` (a message by default) to the form's public endpoint; expects the 303."""
    response = client.post(f"/f/{form.key}", data=fields or {"message": "hello"})
    assert response.status_code == 303, response.get_data(as_text=True)


def deliveries() -> list[Delivery]:
    """Every delivery, oldest first, as committed by now (a worker's commits included)."""
    db.session.rollback()  # SQLite: end the test's read snapshot to see the others' commits
    return list(db.session.scalars(select(Delivery).order_by(Delivery.id)))


def statuses(outcomes: list[Outcome]) -> list[str]:
    return [o.status for o in outcomes]
