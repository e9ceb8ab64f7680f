"""The suppression list: `formrelay suppress`, and the worker sending nothing to it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from formrelay.cli import cli
from formrelay.delivery import DeliveryDeferred
from formrelay.extensions import db
from formrelay.models import Delivery, Suppression
from formrelay.worker import Worker

from ..factories import make_delivery, make_form, make_submission
from ..fakes import RecordingBackend


@pytest.fixture
def formrelay(
    app: Flask, runner: FlaskCliRunner, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")

    def invoke(*args: str) -> Result:
        info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
        return runner.invoke(cli, list(args), obj=info)

    return invoke


def suppressed() -> list[tuple[str, str, str]]:
    db.session.rollback()
    return [
        (s.address, s.reason, s.source)
        for s in db.session.scalars(select(Suppression).order_by(Suppression.id))
    ]


def fresh(delivery: Delivery) -> Delivery:
    db.session.rollback()
    found = db.session.get(Delivery, delivery.id)
    assert found is not None
    db.session.refresh(found)
    return found


def test_suppress_add_lists_the_address_and_ends_its_waiting_deliveries(
    formrelay: Callable[..., Result],
) -> None:
    waiting = make_delivery(db.session, target="gone@example.org")
    other = make_delivery(db.session, target="kept@example.org")
    sent = make_delivery(db.session, target="gone@example.org", status="sent")

    result = formrelay("suppress", "add", " Gone@Example.ORG ", "--reason", "bounce")

    assert result.exit_code == 0, result.output
    assert result.output == "Suppressed gone@example.org (bounce); 1 waiting delivery ended.\n"
    assert suppressed() == [("gone@example.org", "bounce", "cli")]
    ended = fresh(waiting)
    assert (ended.status, ended.last_error) == (
        "dead",
        "suppressed: gone@example.org is on the suppression list (it bounced permanently)",
    )
    assert fresh(other).status == "pending"
    assert fresh(sent).status == "sent"


def test_suppress_add_twice_keeps_the_first_entry(formrelay: Callable[..., Result]) -> None:
    formrelay("suppress", "add", "ann@example.org", "--reason", "complaint")
    result = formrelay("suppress", "add", "ann@example.org")

    assert result.exit_code == 0
    assert suppressed() == [("ann@example.org", "complaint", "cli")]


def test_suppress_add_refuses_what_is_not_an_address(formrelay: Callable[..., Result]) -> None:
    result = formrelay("suppress", "add", "not-an-address")

    assert result.exit_code == 1
    assert "address" in result.output and "valid e-mail address" in result.output
    assert suppressed() == []


def test_suppress_list_and_remove(formrelay: Callable[..., Result]) -> None:
    assert formrelay("suppress", "list").output == "No address is suppressed.\n"
    formrelay("suppress", "add", "ann@example.org", "--detail", "550 5.1.1 no such user")

    listed = formrelay("suppress", "list", "--json")
    [line] = [json.loads(x) for x in listed.output.splitlines()]
    assert {k: v for k, v in line.items() if k != "created_at"} == {
        "address": "ann@example.org",
        "reason": "manual",
        "source": "cli",
        "detail": "550 5.1.1 no such user",
    }
    assert formrelay("suppress", "list").output.startswith("ann@example.org  manual  cli  ")

    removed = formrelay("suppress", "remove", "ANN@example.org")
    assert (removed.exit_code, removed.output) == (
        0,
        "Removed ann@example.org from the suppression list.\n",
    )
    assert suppressed() == []
    again = formrelay("suppress", "remove", "ann@example.org")
    assert again.exit_code == 1
    assert "ann@example.org is not on the suppression list." in again.output


# -- the worker ----------------------------------------------------------------------------------
def suppress(address: str) -> None:
    from formrelay.services.suppressions import suppress as add

    add(db.session(), address, reason="bounce", source="ses")
    db.session.commit()


def test_a_delivery_claimed_for_a_suppressed_address_ends_dead_without_a_send(
    app: Flask, worker: Worker, outbox: RecordingBackend
) -> None:
    delivery = make_delivery(db.session, target="gone@example.org")
    # Suppressed behind the outbox's back (as if another process did it mid-claim).
    db.session.add(Suppression(address="gone@example.org", reason="complaint", source="ses"))
    db.session.commit()

    assert [o.status for o in worker.drain()] == ["dead"]

    assert outbox.sent == []
    assert fresh(delivery).last_error == (
        "suppressed: gone@example.org is on the suppression list "
        "(its recipient complained (marked a message as spam))"
    )


def test_a_suppressed_cc_address_is_left_out_of_the_message(
    app: Flask, worker: Worker, outbox: RecordingBackend
) -> None:
    form = make_form(db.session)
    make_delivery(
        db.session,
        make_submission(db.session, form),
        cc=["gone@example.org", "bob@example.org"],
    )
    suppress("gone@example.org")

    assert [o.status for o in worker.drain()] == ["sent"]

    [message] = outbox.sent
    assert message["Cc"] == "bob@example.org"


def test_a_deferral_is_retried_and_never_counted_as_an_attempt(
    app: Flask, worker: Worker, outbox: RecordingBackend
) -> None:
    delivery = make_delivery(db.session, attempts=12)  # one short of FORMRELAY_MAX_ATTEMPTS
    outbox.fail_with(DeliveryDeferred("SES TooManyRequestsException: slow down", retry_after=60.0))

    assert [o.status for o in worker.drain()] == ["failed"]

    row = fresh(delivery)
    assert (row.status, row.attempts) == ("failed", 12)
    assert row.last_error == "SES TooManyRequestsException: slow down"
    assert row.next_attempt_at is not None
