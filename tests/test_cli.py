"""The `formrelay` commands, as an operator types them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import Result
from flask.cli import ScriptInfo
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from formrelay.cli import cli
from formrelay.db import begin_write
from formrelay.extensions import db
from formrelay.models import Form, Recipient, User
from formrelay.services import accounts

from .conftest import BASE_URL

FORMRELAY = str(Path(sys.executable).parent / "formrelay")


@pytest.fixture
def formrelay(app, runner, monkeypatch) -> Callable[..., Result]:
    """`formrelay ARGS...` run in-process against the test app."""
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")  # Flask's CLI sets it; undone after

    def invoke(*args: str) -> Result:
        # No .env: the test app is configured already, and a developer's file must not leak in.
        info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
        return runner.invoke(cli, list(args), obj=info)

    return invoke


def users() -> list[tuple[str, bool]]:
    db.session.rollback()
    return [(u.email, u.is_admin) for u in db.session.scalars(select(User).order_by(User.id))]


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


# -- user create ---------------------------------------------------------------------------
def test_user_create_adds_a_member_with_the_address_normalised(formrelay):
    result = formrelay("user", "create", "--email", " Ann@Example.ORG ")
    assert (result.exit_code, result.output) == (0, "Created user ann@example.org\n")
    assert users() == [("ann@example.org", False)]


def test_user_create_with_admin_makes_an_admin(formrelay):
    result = formrelay("user", "create", "--email", "boss@example.org", "--admin")
    assert (result.exit_code, result.output) == (0, "Created admin boss@example.org\n")
    assert users() == [("boss@example.org", True)]


@pytest.mark.parametrize(
    ("email", "error"),
    [
        ("ann@example.org", "Error: A user with e-mail ann@example.org exists already.\n"),
        ("ANN@example.org", "Error: A user with e-mail ann@example.org exists already.\n"),
        ("not-an-address", "Error: 'not-an-address' is not a valid e-mail address.\n"),
        ("ann@", "Error: 'ann@' is not a valid e-mail address.\n"),
    ],
)
def test_user_create_refuses_a_duplicate_or_a_bad_address_clearly(formrelay, email, error):
    formrelay("user", "create", "--email", "ann@example.org")
    result = formrelay("user", "create", "--email", email)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", error)
    assert users() == [("ann@example.org", False)]


# -- form create ---------------------------------------------------------------------------
def test_form_create_prints_the_endpoint_url_last_and_the_endpoint_works(formrelay, client):
    result = formrelay(
        "form", "create", "--name", "Contact", "--to", "team@example.org", "--to", "b@example.org"
    )
    assert result.exit_code == 0, result.output
    first, last = result.output.splitlines()
    form = db.session.scalars(select(Form)).one()
    assert last == f"{BASE_URL}/f/{form.key}"
    assert first == (
        f"Created form 'Contact' (key {form.key}), owner team@example.org, "
        "notifying team@example.org, b@example.org"
    )
    response = client.post(urlsplit(last).path, data={"message": "hello"})
    assert response.status_code == 303


def test_recipients_added_from_the_command_line_are_verified(formrelay):
    formrelay("form", "create", "--name", "Contact", "--to", "Team@Example.org", "--to", "b@x.org")
    db.session.rollback()
    recipients = db.session.scalars(select(Recipient).order_by(Recipient.id))
    assert [(r.email, r.verified, r.verified_at is not None) for r in recipients] == [
        ("Team@example.org", True, True),
        ("b@x.org", True, True),
    ]


def test_form_owner_defaults_to_the_first_admin(formrelay):
    formrelay("user", "create", "--email", "member@example.org")
    formrelay("user", "create", "--email", "boss@example.org", "--admin")
    formrelay("user", "create", "--email", "deputy@example.org", "--admin")
    result = formrelay("form", "create", "--name", "Contact", "--to", "team@example.org")
    assert result.exit_code == 0, result.output
    assert ", owner boss@example.org, " in result.output.splitlines()[0]
    assert db.session.scalars(select(Form)).one().owner.email == "boss@example.org"


def test_with_no_admin_the_first_recipient_becomes_the_owning_admin(formrelay):
    result = formrelay(
        "form", "create", "--name", "Contact", "--to", "ann@example.org", "--to", "b@example.org"
    )
    assert result.exit_code == 0, result.output
    assert users() == [("ann@example.org", True)]
    assert db.session.scalars(select(Form)).one().owner.email == "ann@example.org"


def test_form_create_with_owner_uses_that_user(formrelay):
    formrelay("user", "create", "--email", "boss@example.org", "--admin")
    formrelay("user", "create", "--email", "ann@example.org")
    result = formrelay(
        "form", "create", "--name", "Contact", "--to", "t@example.org", "--owner", "Ann@example.org"
    )
    assert result.exit_code == 0, result.output
    assert db.session.scalars(select(Form)).one().owner.email == "ann@example.org"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--to", "team@example.org", "--owner", "ghost@example.org"],
            "Error: No user ghost@example.org; "
            "create one with `formrelay user create --email ...`.",
        ),
        (["--to", "not-an-address"], "Error: 'not-an-address' is not a valid e-mail address."),
        (
            ["--to", "team@example.org", "--to", "bad@"],
            "Error: 'bad@' is not a valid e-mail address.",
        ),
        (
            ["--to", "team@example.org", "--redirect", "ftp://example.org/thanks"],
            "Error: The redirect 'ftp://example.org/thanks' must be an http(s) URL.",
        ),
        (
            ["--to", "team@example.org", "--redirect", "javascript:alert(1)"],
            "Error: The redirect 'javascript:alert(1)' must be an http(s) URL.",
        ),
        (
            ["--to", "team@example.org", "--redirect", "/thanks"],
            "Error: The redirect '/thanks' must be an http(s) URL.",
        ),
    ],
    ids=["unknown-owner", "bad-recipient", "bad-second-recipient", "ftp", "javascript", "path"],
)
def test_form_create_refuses_bad_input_clearly_and_stores_nothing(formrelay, args, error):
    result = formrelay("form", "create", "--name", "Contact", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", error + "\n")
    assert (count(Form), count(User)) == (0, 0)


def test_form_create_keeps_a_valid_redirect(formrelay):
    result = formrelay(
        "form", "create", "--name", "C", "--to", "t@example.org", "--redirect", "https://e.org/ok"
    )
    assert result.exit_code == 0, result.output
    assert db.session.scalars(select(Form)).one().redirect_url == "https://e.org/ok"


def test_with_no_admin_an_existing_member_is_not_promoted_behind_the_operators_back(formrelay):
    formrelay("user", "create", "--email", "ann@example.org")
    result = formrelay("form", "create", "--name", "Contact", "--to", "ann@example.org")
    assert (result.exit_code, result.stderr) == (
        1,
        "Error: There is no admin to own the form and ann@example.org is a user who is not one; "
        "create an admin with `formrelay user create --email E --admin`.\n",
    )
    assert (users(), count(Form)) == ([("ann@example.org", False)], 0)


# -- form list and form demo ---------------------------------------------------------------
def test_form_list_says_how_to_start_when_there_are_no_forms(formrelay):
    result = formrelay("form", "list")
    assert (result.exit_code, result.output) == (
        0,
        "No forms yet: create one with `formrelay form create --name N --to EMAIL`.\n",
    )


def test_form_list_shows_each_form_with_state_recipients_and_url(formrelay):
    formrelay("form", "create", "--name", "Contact", "--to", "a@example.org", "--to", "b@x.org")
    formrelay("form", "create", "--name", "Newsletter", "--to", "c@example.org")
    contact, newsletter = db.session.scalars(select(Form).order_by(Form.id))
    newsletter.enabled = False
    db.session.commit()
    result = formrelay("form", "list")
    assert (result.exit_code, result.output.splitlines()) == (
        0,
        [
            f"{contact.key}  Contact  [enabled]  to: a@example.org, b@x.org  "
            f"{BASE_URL}/f/{contact.key}",
            f"{newsletter.key}  Newsletter  [disabled]  to: c@example.org  "
            f"{BASE_URL}/f/{newsletter.key}",
        ],
    )


def test_form_demo_creates_the_demo_form_once_and_prints_its_url_and_snippet(formrelay, client):
    first = formrelay("form", "demo")
    second = formrelay("form", "demo")
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert first.output == second.output
    demo = db.session.scalars(select(Form)).one()
    url = f"{BASE_URL}/f/{demo.key}"
    assert f"Demo form: {url}" in first.output.splitlines()
    assert f'<form action="{url}" method="POST">' in first.output.splitlines()
    assert [r.email for r in demo.recipients] == ["you@example.com"]
    response = client.post(f"/f/{demo.key}", data={"email": "ann@example.org", "message": "hi"})
    assert response.status_code == 303


def test_form_demo_uses_the_first_admin_as_owner(formrelay):
    formrelay("user", "create", "--email", "boss@example.org", "--admin")
    assert formrelay("form", "demo").exit_code == 0
    assert db.session.scalars(select(Form)).one().owner.email == "boss@example.org"


# -- send-test-email -----------------------------------------------------------------------
def test_send_test_email_sends_through_the_configured_backend(formrelay):
    result = formrelay("send-test-email", "--to", "ann@example.org")
    assert result.exit_code == 0, result.output
    assert "To: ann@example.org" in result.output.splitlines()  # printed by the console backend
    assert result.output.splitlines()[-1].startswith(
        "Sent a test message to ann@example.org through console (id <"
    )


def test_send_test_email_refuses_a_bad_address_clearly(formrelay):
    result = formrelay("send-test-email", "--to", "ann")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        "Error: 'ann' is not a valid e-mail address.\n",
    )


# -- worker --------------------------------------------------------------------------------
def test_worker_once_sends_what_is_due_and_says_how_many(formrelay, client):
    formrelay("form", "create", "--name", "Contact", "--to", "team@example.org")
    key = db.session.scalars(select(Form.key)).one()
    client.post(f"/f/{key}", data={"message": "hello from the form"})
    result = formrelay("worker", "--once")
    assert result.exit_code == 0, result.output
    assert "hello from the form" in result.output  # the console backend printed the mail
    assert result.output.splitlines()[-1] == "1 deliveries processed"
    assert formrelay("worker", "--once").output == "0 deliveries processed\n"


def test_the_console_backend_prints_the_mail_as_a_person_reads_it(formrelay, client):
    formrelay("form", "create", "--name", "Café", "--to", "team@example.org")
    key = db.session.scalars(select(Form.key)).one()
    client.post(f"/f/{key}", data={"name": "Zoë", "message": "Grüße", "_subject": "Frühling"})

    lines = formrelay("worker", "--once").output.splitlines()

    assert "Subject: Frühling" in lines
    assert "To: team@example.org" in lines
    assert lines[lines.index("name:") + 1] == "    Zoë"  # not quoted-printable
    assert lines[lines.index("message:") + 1] == "    Grüße"
    assert any(line.startswith("[text/html alternative, ") for line in lines)


# -- db upgrade, for real ------------------------------------------------------------------
def test_db_upgrade_creates_the_tables_in_an_empty_sqlite_file(tmp_path):
    database = tmp_path / "fresh.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    result = subprocess.run(
        [FORMRELAY, "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        roles = [row[0] for row in conn.execute("SELECT name FROM roles ORDER BY name")]
    assert tables == {
        "alembic_version",
        "roles",
        "users",
        "forms",
        "recipients",
        "submissions",
        "deliveries",
        "workers",
    }
    assert roles == ["admin", "member"]


def test_a_command_that_reads_then_writes_waits_for_another_writer_rather_than_failing(
    formrelay,
):
    # Another process (a web worker storing a submission, say) writes while the command runs.
    other = sessionmaker(bind=db.engine)()
    begin_write(other)
    accounts.create_user(other, "member@example.com")
    finishes = threading.Timer(0.3, other.commit)
    finishes.start()

    result = formrelay("form", "create", "--name", "Contact", "--to", "owner@example.com")

    finishes.join()
    other.close()
    assert result.exit_code == 0, result.output
    assert sorted(users()) == [("member@example.com", False), ("owner@example.com", True)]
