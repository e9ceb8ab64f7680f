"""The `formrelay` commands, as an operator types them."""

from __future__ import annotations

import json
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
from formrelay.delivery import DeliveryFailed
from formrelay.extensions import Base, db
from formrelay.models import Delivery, Form, Recipient, Submission, User, new_form_key
from formrelay.services import accounts

from .conftest import BASE_URL
from .factories import make_form

FORMRELAY = str(Path(sys.executable).parent / "formrelay")


@pytest.fixture
def formrelay(app, runner, monkeypatch) -> Callable[..., Result]:
    """`formrelay ARGS...` run in-process against the test app; `input=` is what is typed."""
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")  # Flask's CLI sets it; undone after

    def invoke(*args: str, input: str | None = None) -> Result:
        # No .env: the test app is configured already, and a developer's file must not leak in.
        info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
        return runner.invoke(cli, list(args), obj=info, input=input)

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
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "Created user ann@example.org"
    assert result.output.splitlines()[-1].startswith(f"{BASE_URL}/sign-in/")
    assert users() == [("ann@example.org", False)]


def test_user_create_with_admin_makes_an_admin(formrelay):
    result = formrelay("user", "create", "--email", "boss@example.org", "--admin")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "Created admin boss@example.org"
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
        (
            ["--to", "team@example.org", "--name", "x" * 201],
            "Error: A form's name can have at most 200 characters; this one has 201.",
        ),
        (
            ["--to", "team@example.org", "--subject", "s" * 201],
            "Error: A subject can have at most 200 characters; this one has 201.",
        ),
    ],
    ids=[
        "unknown-owner",
        "bad-recipient",
        "bad-second-recipient",
        "ftp",
        "javascript",
        "path",
        "long-name",
        "long-subject",
    ],
)
def test_form_create_refuses_bad_input_clearly_and_stores_nothing(formrelay, args, error):
    result = formrelay("form", "create", "--name", "Contact", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", error + "\n")
    assert (count(Form), count(User)) == (0, 0)


def test_form_create_keeps_a_name_of_200_characters_whole(formrelay):
    name = "n" * 199 + "é"
    result = formrelay("form", "create", "--name", name, "--to", "t@example.org")
    assert result.exit_code == 0, result.output
    assert db.session.scalars(select(Form.name)).one() == name


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
    assert first.output.splitlines()[:4] == [
        "",
        f"Demo form: {url}",
        "Paste this into any web page and submit it: `formrelay serve` prints the notification "
        "for you@example.com on its console when the submission arrives (the console mail "
        "backend prints mail instead of sending it).",
        "",
    ]
    assert f'<form action="{url}" method="POST">' in first.output.splitlines()
    assert [r.email for r in demo.recipients] == ["you@example.com"]
    response = client.post(f"/f/{demo.key}", data={"email": "ann@example.org", "message": "hi"})
    assert response.status_code == 303


def test_form_demo_uses_the_first_admin_as_owner(formrelay):
    formrelay("user", "create", "--email", "boss@example.org", "--admin")
    assert formrelay("form", "demo").exit_code == 0
    assert db.session.scalars(select(Form)).one().owner.email == "boss@example.org"


def test_the_demo_placeholder_is_no_admin_so_the_first_real_form_makes_one(formrelay):
    assert formrelay("form", "demo").exit_code == 0
    result = formrelay("form", "create", "--name", "Contact", "--to", "you@example.org")
    assert result.output.splitlines()[0].endswith(
        ", owner you@example.org, notifying you@example.org"
    )
    assert users() == [("you@example.com", False), ("you@example.org", True)]


@pytest.fixture
def admin_config(app_config):
    """FORMRELAY_ADMIN=boss@example.org for the test app (use before `app`)."""
    app_config["admin_email"] = "boss@example.org"
    return app_config


def test_with_formrelay_admin_the_demo_notifies_the_administrator_who_owns_it(
    admin_config, formrelay
):
    result = formrelay("form", "demo")
    assert result.exit_code == 0, result.output
    assert "the notification for boss@example.org on its console" in result.output
    demo = db.session.scalars(select(Form)).one()
    assert ([r.email for r in demo.recipients], demo.owner.email) == (
        ["boss@example.org"],
        "boss@example.org",
    )
    assert users() == [("boss@example.org", True)]


def test_with_formrelay_admin_and_no_admin_the_administrator_owns_a_new_form(
    admin_config, formrelay
):
    result = formrelay("form", "create", "--name", "Contact", "--to", "team@example.org")
    assert result.output.splitlines()[0].endswith(
        ", owner boss@example.org, notifying team@example.org"
    )
    assert users() == [("boss@example.org", True)]


def test_formrelay_admin_naming_a_member_makes_that_member_the_admin(admin_config, formrelay):
    formrelay("user", "create", "--email", "boss@example.org")
    result = formrelay("form", "create", "--name", "Contact", "--to", "team@example.org")
    assert result.exit_code == 0, result.output
    assert users() == [("boss@example.org", True)]


def test_with_an_admin_formrelay_admin_changes_no_owner(admin_config, formrelay):
    formrelay("user", "create", "--email", "first@example.org", "--admin")
    formrelay("form", "create", "--name", "Contact", "--to", "team@example.org")
    assert db.session.scalars(select(Form)).one().owner.email == "first@example.org"
    assert users() == [("first@example.org", True)]


# -- form show, update, disable, enable, delete --------------------------------------------
def show_lines(form: Form, **rows: str | None) -> list[str]:
    """`form show`'s lines for `form` as a make_form default, `rows` replacing some."""
    db.session.refresh(form)
    table = {
        "Name": form.name,
        "Key": form.key,
        "Endpoint": f"{BASE_URL}/f/{form.key}",
        "Owner": "owner@example.com",
        "State": "enabled",
        "Redirect": "(none: formrelay's thanks page)",
        "Subject": f"(default: [formrelay] New submission: {form.name})",
        "Recipients": "owner@example.com (verified)",
        "Files": "off: submissions with files are refused",
        "Retention": "kept until deleted",
        "Created": form.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "Submissions": "0 (and 0 spam)",
        # Spam and abuse, as a new form has them (the tests' app sets no ceiling).
        "Allowed domains": "(any)",
        "Header-less": "off (requests with no Origin or Referer)",
        "Rate limit": "(default: 100000/minute) per address",
        "CAPTCHA": "off",
        "Allow _cc": "off",
        "Honeypot": "_gotcha",
        "Max links": "(no limit)",
        "Blocked words": "(none)",
        "Blocked senders": "(none)",
        "Blocked IPs": "(none)",
        "Min seconds": "(none)",
        "Akismet": "on (AKISMET_API_KEY unset)",
        "Ceiling": "(default: none)",
        **rows,
    }
    width = max(len(label) for label in table)
    lines: list[str] = []
    for label, value in table.items():
        if value is None:
            continue
        first, *more = value.split("\n")
        lines.append(f"{label:<{width}} {first}")
        lines.extend(f"{'':<{width}} {line}" for line in more)
    return lines


def test_form_show_prints_every_setting_of_the_form(formrelay, client):
    form = make_form(
        db.session,
        name="Contact",
        recipients=["owner@example.com", "team@example.org"],
        redirect_url="https://example.org/thanks",
        subject="Hello",
    )
    form.recipients[1].verified = False
    db.session.commit()
    client.post(f"/f/{form.key}", data={"message": "one"})
    client.post(f"/f/{form.key}", data={"message": "two"})
    client.post(f"/f/{form.key}", data={"message": "bot", "_gotcha": "x"})

    result = formrelay("form", "show", form.key)

    assert (result.exit_code, result.output.splitlines()) == (
        0,
        show_lines(
            form,
            Redirect="https://example.org/thanks",
            Subject="Hello",
            Recipients="owner@example.com (verified)\n"
            "team@example.org (unverified: receives nothing yet)",
            Submissions="2 (and 1 spam)",
        ),
    )


def test_form_show_of_a_disabled_form_says_it_refuses_submissions(formrelay):
    form = make_form(db.session, enabled=False)
    result = formrelay("form", "show", form.key)
    assert result.output.splitlines() == show_lines(form, State="disabled: submissions are refused")


@pytest.mark.parametrize(
    "command",
    [
        ["form", "show", "nope"],
        ["form", "update", "nope", "--name", "New"],
        ["form", "disable", "nope"],
        ["form", "enable", "nope"],
        ["form", "delete", "nope", "--yes"],
        ["form", "delete", "nope"],
        ["submissions", "list", "--form", "nope"],
    ],
    ids=lambda c: " ".join(c[:2]) + (" --yes" if "--yes" in c else ""),
)
def test_a_key_that_does_not_exist_is_refused_clearly(formrelay, command):
    make_form(db.session)
    result = formrelay(*command)
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        "Error: No form with key nope.\n",
    )


def test_form_update_changes_what_is_given_and_leaves_the_rest(formrelay):
    form = make_form(db.session, name="Contact", subject="Old", redirect_url="https://e.org/a")
    result = formrelay("form", "update", form.key, "--name", "  Support   desk ")
    assert (result.exit_code, result.output.splitlines()) == (
        0,
        [
            f"Updated form 'Support desk' (key {form.key}): name",
            *show_lines(form, Subject="Old", Redirect="https://e.org/a"),
        ],
    )
    assert (form.name, form.subject, form.redirect_url) == (
        "Support desk",
        "Old",
        "https://e.org/a",
    )


def test_form_update_with_empty_strings_clears_the_redirect_and_subject(formrelay, client):
    form = make_form(db.session, subject="Old", redirect_url="https://e.org/a")
    result = formrelay("form", "update", form.key, "--redirect", "", "--subject", "")
    assert result.output.splitlines()[0] == (
        f"Updated form 'Contact' (key {form.key}): redirect, subject"
    )
    db.session.refresh(form)
    assert (form.subject, form.redirect_url) == (None, None)
    response = client.post(f"/f/{form.key}", data={"message": "hi"})
    assert urlsplit(response.headers["Location"]).path == "/thanks"


def test_form_update_sets_a_new_redirect_that_submissions_follow(formrelay, client):
    form = make_form(db.session)
    result = formrelay("form", "update", form.key, "--redirect", "https://example.org/ok")
    assert result.exit_code == 0, result.output
    response = client.post(f"/f/{form.key}", data={"message": "hi"})
    assert (response.status_code, response.headers["Location"]) == (303, "https://example.org/ok")


def test_form_update_adds_recipients_verified_and_removes_others(formrelay):
    form = make_form(db.session, recipients=["owner@example.com", "old@example.org"])
    result = formrelay(
        "form",
        "update",
        form.key,
        "--add-to",
        "New@Example.org",
        "--add-to",
        "b@x.org",
        "--remove-to",
        "OLD@example.org",
    )
    assert result.output.splitlines()[0] == (f"Updated form 'Contact' (key {form.key}): recipients")
    db.session.rollback()
    recipients = db.session.scalars(
        select(Recipient).where(Recipient.form_id == form.id).order_by(Recipient.id)
    )
    assert [(r.email, r.verified, r.verified_at is not None) for r in recipients] == [
        ("owner@example.com", True, True),
        ("New@example.org", True, True),
        ("b@x.org", True, True),
    ]


def test_form_update_verifies_an_unverified_recipient_added_again(formrelay):
    form = make_form(db.session, recipients=["owner@example.com"], verified=False)
    result = formrelay("form", "update", form.key, "--add-to", "owner@example.com")
    assert result.output.splitlines()[0].endswith(": recipients")
    db.session.rollback()
    assert db.session.scalars(select(Recipient.verified)).all() == [True]


def test_form_update_that_changes_nothing_says_so(formrelay):
    form = make_form(db.session, name="Contact")
    result = formrelay(
        "form", "update", form.key, "--name", "Contact", "--add-to", "owner@example.com"
    )
    assert (result.exit_code, result.output) == (
        0,
        f"Form 'Contact' (key {form.key}) is unchanged.\n",
    )


def test_form_update_without_an_option_is_a_usage_error(formrelay):
    form = make_form(db.session)
    result = formrelay("form", "update", form.key)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: Nothing to change: give at least one option (see --help)."
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--name", "x" * 201], "A form's name can have at most 200 characters; this one has 201."),
        (["--name", "  "], "A form needs a name."),
        (
            ["--redirect", "javascript:alert(1)"],
            "The redirect 'javascript:alert(1)' must be an http(s) URL.",
        ),
        (
            ["--redirect", "https://e.org/" + "a" * 2000],
            "The redirect URL can have at most 2000 characters; this one has 2014.",
        ),
        (["--subject", "s" * 201], "A subject can have at most 200 characters; this one has 201."),
        (["--add-to", "bad@"], "'bad@' is not a valid e-mail address."),
        (
            ["--remove-to", "ghost@example.org"],
            "ghost@example.org is not a recipient of this form.",
        ),
        (
            ["--remove-to", "owner@example.com"],
            "A form needs at least one recipient: add another before removing the last.",
        ),
        (
            ["--name", "New", "--add-to", "a@example.org", "--add-to", "nope"],
            "'nope' is not a valid e-mail address.",
        ),
    ],
    ids=[
        "long-name",
        "blank-name",
        "javascript-redirect",
        "long-redirect",
        "long-subject",
        "bad-address",
        "not-a-recipient",
        "last-recipient",
        "one-bad-of-several",
    ],
)
def test_form_update_refuses_bad_input_clearly_and_changes_nothing(formrelay, args, error):
    form = make_form(db.session, name="Contact")
    before = show_lines(form)
    result = formrelay("form", "update", form.key, *args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {error}\n")
    assert formrelay("form", "show", form.key).output.splitlines() == before


def test_a_disabled_form_refuses_submissions_until_enabled_again(formrelay, client):
    form = make_form(db.session)
    disabled = formrelay("form", "disable", form.key)
    assert (disabled.exit_code, disabled.output) == (
        0,
        f"Form 'Contact' (key {form.key}) is disabled: it refuses submissions.\n",
    )
    refused = client.post(
        f"/f/{form.key}", data={"message": "hi"}, headers={"Accept": "application/json"}
    )
    assert (refused.status_code, refused.json["errors"][0]["code"]) == (403, "INACTIVE")

    enabled = formrelay("form", "enable", form.key)
    assert (
        enabled.output == f"Form 'Contact' (key {form.key}) is enabled: it accepts submissions.\n"
    )
    assert client.post(f"/f/{form.key}", data={"message": "hi"}).status_code == 303


def test_form_delete_asks_first_and_deletes_nothing_when_told_no(formrelay, client):
    form = make_form(db.session)
    client.post(f"/f/{form.key}", data={"message": "hi"})
    result = formrelay("form", "delete", form.key, input="n\n")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"Delete form 'Contact' (key {form.key}) and its 1 submission? This cannot be undone "
        "[y/N]: n\nNothing was deleted.\n",  # the runner echoes what is typed
    )
    assert (count(Form), count(Submission), count(Delivery)) == (1, 1, 1)


def test_form_delete_confirmed_deletes_the_form_its_submissions_and_deliveries(formrelay, client):
    form = make_form(db.session, recipients=["a@example.org", "b@example.org"])
    other = make_form(db.session, name="Other")
    for message in ("one", "two"):
        client.post(f"/f/{form.key}", data={"message": message})
    client.post(f"/f/{other.key}", data={"message": "stays"})
    key = form.key

    result = formrelay("form", "delete", key, input="y\n")

    assert (result.exit_code, result.stdout) == (
        0,
        f"Deleted form 'Contact' (key {key}) and its 2 submissions.\n",
    )
    assert (count(Form), count(Recipient), count(Submission), count(Delivery)) == (1, 1, 1, 1)
    assert formrelay("form", "show", key).stderr == f"Error: No form with key {key}.\n"


def test_form_delete_with_yes_does_not_ask(formrelay):
    form = make_form(db.session)
    result = formrelay("form", "delete", form.key, "--yes")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        f"Deleted form 'Contact' (key {form.key}) and its 0 submissions.\n",
        "",
    )
    assert count(Form) == 0


# -- submissions list ----------------------------------------------------------------------
def stamp(submission_id: int) -> str:
    db.session.rollback()
    return db.session.get(Submission, submission_id).created_at.strftime("%Y-%m-%d %H:%M:%S UTC")


def post(client, form: Form, **fields: str) -> int:
    response = client.post(f"/f/{form.key}", data=fields, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.json
    return response.json["id"]


def test_submissions_list_shows_the_newest_first_with_each_delivery_state(
    formrelay, client, worker
):
    form = make_form(db.session, recipients=["a@example.org", "b@example.org"])
    first = post(client, form, email="ann@example.org", message="Hello\nthere")
    worker.drain()
    second = post(client, form, name="Zoë", message="x" * 80)

    result = formrelay("submissions", "list")

    assert (result.exit_code, result.output.splitlines()) == (
        0,
        [
            f"{second}  {stamp(second)}  {form.key}  name: Zoë; message: {'x' * 39}…  "
            "[a@example.org pending, b@example.org pending]",
            f"{first}  {stamp(first)}  {form.key}  email: ann@example.org; message: Hello there  "
            "[a@example.org sent, b@example.org sent]",
        ],
    )


def test_submissions_list_shows_a_failed_delivery(formrelay, client, worker, outbox):
    form = make_form(db.session)
    sub = post(client, form, message="hi")
    outbox.fail_with(DeliveryFailed("mailbox full", retryable=False))
    worker.drain()
    result = formrelay("submissions", "list")
    assert (
        result.output == f"{sub}  {stamp(sub)}  {form.key}  message: hi  [owner@example.com dead]\n"
    )


def test_submissions_list_takes_one_form_and_a_limit(formrelay, client):
    contact = make_form(db.session, name="Contact")
    other = make_form(db.session, name="Other")
    ids = [post(client, contact, message=str(n)) for n in range(3)]
    post(client, other, message="elsewhere")

    result = formrelay("submissions", "list", "--form", contact.key, "--limit", "2")

    assert [line.split()[0] for line in result.output.splitlines()] == [str(ids[2]), str(ids[1])]


def test_submissions_list_keeps_spam_apart(formrelay, client):
    form = make_form(db.session)
    kept = post(client, form, message="real")
    spam = post(client, form, message="buy now", _gotcha="filled")

    inbox_lines = formrelay("submissions", "list").output.splitlines()
    spam_lines = formrelay("submissions", "list", "--spam").output.splitlines()

    assert [line.split()[0] for line in inbox_lines] == [str(kept)]
    assert spam_lines == [
        f"{spam}  {stamp(spam)}  {form.key}  message: buy now  [spam (honeypot field was filled)]"
    ]


def test_submissions_list_json_prints_one_object_per_line(formrelay, client):
    form = make_form(db.session)
    sub = post(client, form, email="ann@example.org", message="Grüße", _subject="Hi")

    result = formrelay("submissions", "list", "--json")

    db.session.rollback()
    created = db.session.get(Submission, sub).created_at.isoformat()
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == [
        {
            "id": sub,
            "form": form.key,
            "created_at": created,
            "fields": [["email", "ann@example.org"], ["message", "Grüße"]],
            "reply_to": "ann@example.org",
            "subject": "Hi",
            "spam": False,
            "spam_reason": None,
            "deliveries": [
                {
                    "channel": "email",
                    "target": "owner@example.com",
                    "status": "pending",
                    "attempts": 0,
                    "last_error": None,
                    "sent_at": None,
                }
            ],
            "files": [],
        }
    ]
    assert "Grüße" in result.output  # readable, not \u-escaped


@pytest.mark.parametrize(
    ("args", "output"),
    [
        ([], "No submissions yet.\n"),
        (["--spam"], "No spam yet.\n"),
        (["--json"], ""),
    ],
)
def test_submissions_list_with_nothing_to_show(formrelay, args, output):
    result = formrelay("submissions", "list", *args)
    assert (result.exit_code, result.output) == (0, output)


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
    # Every model's table (search indexes add tables of their own).
    assert {"alembic_version", *Base.metadata.tables} <= tables
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


def test_form_keys_never_start_with_a_dash_that_the_command_line_would_take_for_an_option():
    assert not any(new_form_key().startswith("-") for _ in range(2000))


def test_a_key_starting_with_a_dash_is_given_after_a_double_dash(formrelay):
    form = make_form(db.session)
    form.key = "-" + form.key[1:]  # made before keys stopped starting with one
    db.session.commit()
    assert (
        formrelay("form", "show", "--", form.key).output.splitlines()[1]
        == f"Key             {form.key}"
    )


def test_form_update_turns_files_on_with_limits_and_show_prints_them(formrelay, client):
    form = make_form(db.session)
    result = formrelay(
        "form", "update", form.key, "--files", "on", "--max-file-mb", "20",
        "--max-total-mb", "40", "--max-files", "3", "--allowed-types", "PDF, .png jpg",
        "--retention-days", "30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"Updated form 'Contact' (key {form.key}): files-enabled, max-file-mb, max-total-mb, "
        "max-files, allowed-types, retention"
    )
    assert result.output.splitlines()[1:] == show_lines(
        form,
        Files="on: at most 3 file(s), 20 MB each, 40 MB in all; .jpg, .pdf, .png",
        Retention="30 days",
    )
    db.session.refresh(form)
    assert (form.files_enabled, form.max_file_mb, form.allowed_types) == (True, 20, "jpg,pdf,png")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-file-mb", "0"], "The size of one file must be from 1 to 10000, not 0."),
        (
            ["--max-file-mb", "30"],
            "One file may not be larger (30 MB) than all files together (25 MB).",
        ),
        (["--allowed-types", "p/df"], "Allowed types: 'p/df' is not a file extension."),
        (["--max-files", "101"], "The number of files must be from 1 to 100, not 101."),
    ],
)
def test_form_update_refuses_bad_upload_limits(formrelay, client, options, message):
    form = make_form(db.session)
    result = formrelay("form", "update", form.key, *options)
    assert result.exit_code == 1
    assert result.output.strip().endswith(message)
