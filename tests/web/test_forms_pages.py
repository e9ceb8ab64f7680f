"""The forms pages: the list with its figures, create, settings, recipients, set-up, delete."""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import Message

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from formrelay.extensions import db
from formrelay.models import Delivery, DeliveryStatus, Form, Recipient, Submission, utcnow
from formrelay.worker import Worker

from ..auth import AuthActions, csrf_token, post_form
from ..factories import make_delivery, make_form, make_submission, make_user
from ..fakes import RecordingBackend

OWNER, OTHER, ADMIN = "owner@example.com", "other@example.com", "admin@example.com"

# Every page of one form, with its method; {key} and {rid} (one of its recipients) filled in.
FORM_PAGES = [
    ("GET", "/forms/{key}/settings"),
    ("GET", "/forms/{key}/setup"),
    ("GET", "/forms/{key}/delete"),
    ("POST", "/forms/{key}/settings"),
    ("POST", "/forms/{key}/spam"),
    ("POST", "/forms/{key}/recipients"),
    ("POST", "/forms/{key}/uploads"),
    ("POST", "/forms/{key}/recipients/{rid}/resend"),
    ("POST", "/forms/{key}/recipients/{rid}/remove"),
    ("POST", "/forms/{key}/disable"),
    ("POST", "/forms/{key}/enable"),
    ("POST", "/forms/{key}/delete"),
]
STATE_CHANGING = [page for page in FORM_PAGES if page[0] == "POST"] + [("POST", "/forms/new")]


def owner_form(**overrides: object) -> Form:
    """OWNER's form (OWNER a member), with a second, pending recipient to resend to."""
    owner = make_user(db.session, OWNER, admin=False)
    form = make_form(db.session, owner=owner, **overrides)  # type: ignore[arg-type]
    db.session.add(Recipient(form=form, email="pending@example.com", verified=False))
    db.session.commit()
    return form


def fill(path: str, form: Form) -> str:
    pending = next(r for r in form.recipients if not r.verified)
    return path.format(key=form.key, rid=pending.id)


def page_text(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def mail_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text part")


def verification_link(outbox: RecordingBackend, to: str) -> str:
    """The path of the last verification link mailed to `to`."""
    sent = [m for m in outbox.sent if m["To"] == to]
    assert sent, f"no mail to {to}: {[m['To'] for m in outbox.sent]}"
    found = re.search(r"http://forms\.test(/verify/\S+)", mail_text(sent[-1]))
    assert found, mail_text(sent[-1])
    return found.group(1)


def queued_mail_to(address: str) -> int:
    return (
        db.session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.target == address)
        )
        or 0
    )


# -- who may see what ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [*FORM_PAGES, ("GET", "/forms"), ("GET", "/forms/new"), ("POST", "/forms/new")],
)
def test_signed_out_visitors_are_sent_to_log_in(
    client: FlaskClient, method: str, path: str
) -> None:
    form = owner_form()
    data = {"csrf_token": csrf_token(client, "/login")} if method == "POST" else None
    response = client.open(fill(path, form), method=method, data=data)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    assert db.session.get(Form, form.id) is not None


@pytest.mark.parametrize(("method", "path"), FORM_PAGES)
def test_another_users_form_does_not_exist_for_them(
    client: FlaskClient, auth: AuthActions, method: str, path: str
) -> None:
    form = owner_form()
    make_user(db.session, OTHER, admin=False)
    db.session.commit()
    auth.login(OTHER)
    data = {"csrf_token": csrf_token(client, "/forms"), "name": "Mine", "email": "x@example.com"}
    response = client.open(fill(path, form), method=method, data=data if method == "POST" else None)
    assert response.status_code == 404
    same_for_no_such_key = client.open(
        path.format(key="no-such-key", rid=1),
        method=method,
        data=data if method == "POST" else None,
    )
    assert same_for_no_such_key.status_code == 404
    db.session.refresh(form)
    assert form.name == "Contact" and form.enabled and len(form.recipients) == 2


@pytest.mark.parametrize(("method", "path"), STATE_CHANGING)
def test_changes_without_the_csrf_token_are_refused(
    client: FlaskClient, auth: AuthActions, method: str, path: str
) -> None:
    form = owner_form()
    auth.login(OWNER)
    response = client.post(fill(path, form), data={"name": "Changed", "email": "x@example.com"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    db.session.refresh(form)
    assert form.name == "Contact" and form.enabled and len(form.recipients) == 2


def test_a_recipient_of_another_form_cannot_be_reached_through_ones_own(
    client: FlaskClient, auth: AuthActions
) -> None:
    mine = owner_form()
    theirs = make_form(db.session, owner=make_user(db.session, OTHER, admin=False))
    theirs_rid = theirs.recipients[0].id
    auth.login(OWNER)
    response = post_form(
        client, "/forms", action=f"/forms/{mine.key}/recipients/{theirs_rid}/remove"
    )
    assert response.status_code == 404
    assert db.session.get(Recipient, theirs_rid) is not None


def test_an_admin_sees_and_opens_everyones_forms(client: FlaskClient, auth: AuthActions) -> None:
    form = owner_form(name="Owner's contact")
    make_user(db.session, ADMIN, admin=True)
    db.session.commit()
    auth.login(ADMIN)
    listing = page_text(client, "/forms")
    assert "Owner&#39;s contact" in listing and OWNER in listing
    assert "Owner&#39;s contact" in page_text(client, f"/forms/{form.key}/settings")


def test_a_member_lists_only_their_own_forms(client: FlaskClient, auth: AuthActions) -> None:
    owner_form(name="Mine")
    make_form(db.session, name="Theirs", owner=make_user(db.session, OTHER, admin=False))
    auth.login(OWNER)
    listing = page_text(client, "/forms")
    assert "Mine" in listing and "Theirs" not in listing


# -- the list ------------------------------------------------------------------------------
def row_of(listing: str, key: str) -> str:
    found = re.search(
        rf'<tr class="form-row" data-key="{re.escape(key)}">(.*?)</tr>', listing, re.S
    )
    assert found, f"no row for {key}"
    return found.group(1)


def cell(row: str, name: str) -> str:
    found = re.search(rf'<td class="{name}">(.*?)</td>', row, re.S)
    assert found, f"no {name} cell"
    return found.group(1).strip()


def test_the_list_shows_endpoint_counts_sparkline_and_last_time(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    # Times from today's UTC midnight, so that a run just after midnight counts the same.
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    make_submission(db.session, form, created_at=today + timedelta(minutes=10))
    make_submission(db.session, form, created_at=today + timedelta(minutes=5))
    make_submission(db.session, form, created_at=today - timedelta(days=2))
    make_submission(db.session, form, created_at=today - timedelta(days=45))  # total only
    make_submission(db.session, form, spam=True, created_at=today + timedelta(hours=1))
    auth.login(OWNER)

    row = row_of(page_text(client, "/forms"), form.key)

    assert f"http://forms.test/f/{form.key}" in row
    assert cell(row, "total") == "4"
    recent = cell(row, "recent")
    assert recent.endswith("<span>3</span>")
    label = re.search(r'<svg class="sparkline" role="img"[^>]*aria-label="([^"]+)"', recent)
    assert label, recent
    days = [
        int(n)
        for n in re.search(r"oldest first: ([\d, ]+) \(", label.group(1)).group(1).split(", ")
    ]  # type: ignore[union-attr]
    assert len(days) == 30 and days[-1] == 2 and days[-3] == 1 and sum(days) == 3
    assert "(3 in all)" in label.group(1)
    assert re.search(r"<polyline points=\"[\d., ]+\"/>", recent)
    last = (today + timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M")
    assert f">{last}</time>" in cell(row, "last")


def test_delivery_health_links_to_the_failed_and_dead_deliveries(
    client: FlaskClient, auth: AuthActions
) -> None:
    form, quiet = (
        owner_form(),
        make_form(db.session, name="Quiet", owner=make_user(db.session, OWNER)),
    )
    sub = make_submission(db.session, form)
    make_delivery(db.session, sub, status=DeliveryStatus.FAILED)
    make_delivery(db.session, sub, status=DeliveryStatus.DEAD)
    make_delivery(db.session, sub, status=DeliveryStatus.DEAD)
    make_delivery(db.session, sub, status=DeliveryStatus.SENT)
    auth.login(OWNER)

    listing = page_text(client, "/forms")

    health = cell(row_of(listing, form.key), "health")
    assert f'href="/forms/{form.key}?delivery=failed">1 failed</a>' in health
    assert f'href="/forms/{form.key}?delivery=dead">2 dead</a>' in health
    assert "none failed" in cell(row_of(listing, quiet.key), "health")


def test_the_list_costs_the_same_queries_for_one_form_or_many(
    client: FlaskClient, auth: AuthActions
) -> None:
    owner = make_user(db.session, OWNER, admin=False)
    make_submission(db.session, make_form(db.session, owner=owner))
    auth.login(OWNER)

    def queries() -> int:
        statements: list[str] = []

        def record(conn: object, cursor: object, statement: str, *args: object) -> None:
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            page_text(client, "/forms")
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        return len(statements)

    one = queries()
    for n in range(5):
        form = make_form(db.session, name=f"More {n}", owner=owner)
        make_delivery(db.session, make_submission(db.session, form), status=DeliveryStatus.DEAD)
    assert queries() == one


def test_dashboard_pages_carry_no_inline_styles_or_scripts(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    make_submission(db.session, form)
    auth.login(OWNER)
    for path in (
        "/forms",
        "/forms/new",
        *(f"/forms/{form.key}/{p}" for p in ("settings", "setup", "delete")),
    ):
        html = page_text(client, path)
        assert not re.search(r"<[a-z][^>]*\sstyle=", html), path
        assert not re.search(r"<script(?![^>]*\ssrc=)", html), path


# -- create --------------------------------------------------------------------------------
def test_a_form_sent_to_the_owners_confirmed_address_is_ready_at_once(
    client: FlaskClient, auth: AuthActions
) -> None:
    make_user(db.session, OWNER, admin=False)
    db.session.commit()
    auth.login(OWNER)
    assert f'value="{OWNER}"' in page_text(client, "/forms/new")  # offered by default

    response = post_form(client, "/forms/new", {"name": "Newsletter", "recipient": OWNER})

    form = db.session.scalar(select(Form).where(Form.name == "Newsletter"))
    assert form is not None and form.owner.email == OWNER
    assert response.headers["Location"] == f"/forms/{form.key}/setup"
    assert [(r.email, r.verified) for r in form.recipients] == [(OWNER, True)]
    assert queued_mail_to(OWNER) == 0


def test_a_form_sent_to_another_address_waits_for_it_to_be_verified(
    client: FlaskClient, auth: AuthActions
) -> None:
    make_user(db.session, OWNER, admin=False)
    db.session.commit()
    auth.login(OWNER)

    post_form(client, "/forms/new", {"name": "Sales", "recipient": "sales@example.com"})

    form = db.session.scalar(select(Form).where(Form.name == "Sales"))
    assert form is not None
    assert [(r.email, r.verified) for r in form.recipients] == [("sales@example.com", False)]
    assert queued_mail_to("sales@example.com") == 1
    assert "A verification link was sent to sales@example.com" in page_text(
        client, f"/forms/{form.key}/setup"
    )


def test_an_unconfirmed_owner_address_is_verified_like_any_other(
    client: FlaskClient, auth: AuthActions
) -> None:
    user = make_user(db.session, OWNER, admin=False)
    user.confirmed_at = None
    db.session.commit()
    auth.login(OWNER)
    post_form(client, "/forms/new", {"name": "Sales", "recipient": OWNER})
    form = db.session.scalar(select(Form).where(Form.name == "Sales"))
    assert form is not None and not form.recipients[0].verified
    assert queued_mail_to(OWNER) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "recipient": OWNER}, "This field is required."),
        ({"name": "   ", "recipient": OWNER}, "This field is required."),
        ({"name": "x" * 201, "recipient": OWNER}, "longer than 200 characters"),
        ({"name": "Sales", "recipient": "not an address"}, "is not a valid e-mail address"),
    ],
)
def test_a_form_with_bad_input_is_not_created(
    client: FlaskClient, auth: AuthActions, data: dict[str, str], message: str
) -> None:
    make_user(db.session, OWNER, admin=False)
    db.session.commit()
    auth.login(OWNER)
    response = post_form(client, "/forms/new", data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Form)) == 0


# -- settings ------------------------------------------------------------------------------
def test_settings_change_name_redirect_subject_and_store_only(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    auth.login(OWNER)
    page = f"/forms/{form.key}/settings"
    response = post_form(
        client,
        page,
        {
            "name": "Support",
            "redirect_url": "https://example.com/thanks",
            "subject": "Help wanted",
            "store_only": "y",
        },
    )
    assert response.headers["Location"] == page
    db.session.refresh(form)
    assert (form.name, form.redirect_url, form.subject, form.store_only) == (
        "Support",
        "https://example.com/thanks",
        "Help wanted",
        True,
    )
    html = page_text(client, page)
    assert "Settings saved." in html and 'value="https://example.com/thanks"' in html

    post_form(client, page, {"name": "Support", "redirect_url": "", "subject": ""})
    db.session.refresh(form)
    assert (form.redirect_url, form.subject, form.store_only) == (None, None, False)


def test_a_redirect_that_is_not_http_is_refused_and_nothing_changes(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    auth.login(OWNER)
    response = post_form(
        client,
        f"/forms/{form.key}/settings",
        {"name": "Renamed", "redirect_url": "javascript:alert(1)"},
    )
    assert response.status_code == 400
    assert "must be an http(s) URL" in response.get_data(as_text=True)
    db.session.refresh(form)
    assert (form.name, form.redirect_url) == ("Contact", None)


def test_a_store_only_form_keeps_submissions_and_sends_nothing(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    auth.login(OWNER)
    post_form(client, f"/forms/{form.key}/settings", {"name": "Contact", "store_only": "y"})

    response = client.post(f"/f/{form.key}", data={"message": "keep me"})

    assert response.status_code == 303
    stored = db.session.scalars(select(Submission).where(Submission.form_id == form.id)).all()
    assert [s.fields for s in stored] == [[["message", "keep me"]]]
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_disable_and_enable_a_form(client: FlaskClient, auth: AuthActions) -> None:
    form = owner_form()
    auth.login(OWNER)
    settings = f"/forms/{form.key}/settings"

    post_form(client, settings, action=f"/forms/{form.key}/disable")
    assert client.post(f"/f/{form.key}", data={"message": "hi"}).status_code == 403
    assert "Enable form" in page_text(client, settings)

    post_form(client, settings, action=f"/forms/{form.key}/enable")
    assert client.post(f"/f/{form.key}", data={"message": "hi"}).status_code == 303
    assert "Disable form" in page_text(client, settings)


# -- recipients ----------------------------------------------------------------------------
def test_a_new_recipient_verifies_by_the_link_mailed_to_it(
    client: FlaskClient, auth: AuthActions, worker: Worker, outbox: RecordingBackend
) -> None:
    form = owner_form()
    auth.login(OWNER)
    settings = f"/forms/{form.key}/settings"

    response = post_form(
        client, settings, {"email": "ann@example.com"}, action=f"/forms/{form.key}/recipients"
    )
    assert response.headers["Location"] == settings
    html = page_text(client, settings)
    assert "ann@example.com" in html and "pending verification" in html
    assert "Resend verification to ann@example.com" in html

    # Before it is verified, a submission is not sent to it.
    client.post(f"/f/{form.key}", data={"message": "first"})
    worker.drain()
    link = verification_link(outbox, "ann@example.com")
    assert [m["To"] for m in outbox.sent if "Confirm" not in m["Subject"]] == [OWNER]

    auth.logout()  # the recipient need not have an account
    asking = page_text(client, link)
    assert "Verify ann@example.com" in asking
    recipient = db.session.scalar(select(Recipient).where(Recipient.email == "ann@example.com"))
    assert recipient is not None and not recipient.verified  # following the link is not enough
    done = post_form(client, link)
    assert done.status_code == 200
    assert "now receives the submissions" in done.get_data(as_text=True)
    db.session.refresh(recipient)
    assert recipient.verified and recipient.verified_at is not None
    assert recipient.verification_token is None

    assert client.get(link).status_code == 404  # used once, dead
    client.post(f"/f/{form.key}", data={"message": "second"})
    worker.drain()
    assert sorted(m["To"] for m in outbox.sent[-2:]) == ["ann@example.com", OWNER]


def test_a_resent_link_replaces_the_one_before(
    client: FlaskClient, auth: AuthActions, worker: Worker, outbox: RecordingBackend
) -> None:
    form = owner_form()
    auth.login(OWNER)
    settings = f"/forms/{form.key}/settings"
    post_form(
        client, settings, {"email": "ann@example.com"}, action=f"/forms/{form.key}/recipients"
    )
    worker.drain()
    first = verification_link(outbox, "ann@example.com")
    ann = db.session.scalar(select(Recipient).where(Recipient.email == "ann@example.com"))
    assert ann is not None

    response = post_form(client, settings, action=f"/forms/{form.key}/recipients/{ann.id}/resend")
    assert response.headers["Location"] == settings
    assert "A new verification link is on its way to ann@example.com" in page_text(client, settings)
    worker.drain()
    second = verification_link(outbox, "ann@example.com")

    assert second != first
    assert client.get(first).status_code == 404
    assert post_form(client, second).status_code == 200
    db.session.refresh(ann)
    assert ann.verified


def test_resending_to_a_verified_recipient_is_refused(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    verified = form.recipients[0].id
    auth.login(OWNER)
    response = post_form(client, "/forms", action=f"/forms/{form.key}/recipients/{verified}/resend")
    assert response.status_code == 409
    assert "verified already" in response.get_data(as_text=True)


def test_an_unknown_verification_link_is_refused(client: FlaskClient) -> None:
    owner_form()
    assert client.get("/verify/not-a-token").status_code == 404
    token = csrf_token(client, "/login")
    assert client.post("/verify/not-a-token", data={"csrf_token": token}).status_code == 404


def test_adding_the_owners_address_verifies_it_at_once(
    client: FlaskClient, auth: AuthActions
) -> None:
    owner = make_user(db.session, OWNER, admin=False)
    form = make_form(db.session, owner=owner, recipients=["team@example.com"])
    auth.login(OWNER)
    post_form(client, "/forms", {"email": OWNER.upper()}, action=f"/forms/{form.key}/recipients")
    db.session.refresh(form)
    assert [(r.email.lower(), r.verified) for r in form.recipients][-1] == (OWNER, True)
    assert queued_mail_to(OWNER.upper()) == queued_mail_to(OWNER) == 0


@pytest.mark.parametrize(
    ("address", "status", "message"),
    [
        ("owner@example.com", 400, "is a recipient of this form already"),
        ("nope", 400, "is not a valid e-mail address"),
    ],
)
def test_a_bad_recipient_is_refused(
    client: FlaskClient, auth: AuthActions, address: str, status: int, message: str
) -> None:
    form = owner_form()
    auth.login(OWNER)
    response = post_form(
        client, "/forms", {"email": address}, action=f"/forms/{form.key}/recipients"
    )
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    db.session.refresh(form)
    assert len(form.recipients) == 2


def test_remove_a_recipient_but_never_the_last(client: FlaskClient, auth: AuthActions) -> None:
    form = owner_form()
    first, pending = (r.id for r in form.recipients)
    auth.login(OWNER)
    settings = f"/forms/{form.key}/settings"

    response = post_form(client, settings, action=f"/forms/{form.key}/recipients/{pending}/remove")
    assert response.headers["Location"] == settings
    assert "pending@example.com no longer receives" in page_text(client, settings)
    db.session.refresh(form)
    assert [r.id for r in form.recipients] == [first]

    last = post_form(client, settings, action=f"/forms/{form.key}/recipients/{first}/remove")
    assert last.status_code == 400
    assert "at least one recipient" in last.get_data(as_text=True)
    db.session.refresh(form)
    assert [r.id for r in form.recipients] == [first]


# -- set up --------------------------------------------------------------------------------
def test_the_set_up_tab_gives_paste_ready_code(client: FlaskClient, auth: AuthActions) -> None:
    form = owner_form()
    auth.login(OWNER)
    html = page_text(client, f"/forms/{form.key}/setup")
    endpoint = f"http://forms.test/f/{form.key}"

    assert f"&lt;form action=&#34;{endpoint}&#34; method=&#34;POST&#34;&gt;" in html or (
        f'&lt;form action="{endpoint}" method="POST"&gt;' in html
    )
    assert 'name="_gotcha"' in html or "name=&#34;_gotcha&#34;" in html
    assert f'fetch("{endpoint}"' in html
    assert '"Accept": "application/json"' in html
    assert f'useForm("{form.key}", {{ endpoint: "http://forms.test" }})' in html
    assert f'formId: "{form.key}", origin: "http://forms.test"' in html
    for name in (
        "_replyto",
        "_next",
        "_subject",
        "_cc",
        "_gotcha",
        "_language",
        "_template",
        "_format",
    ):
        assert f"<td><code>{name}</code></td>" in html
    targets = re.findall(r'data-clipboard-target="#([\w-]+)"', html)  # copy buttons
    assert len(targets) == 6 and all(f'id="{t}"' in html for t in targets)
    tabs = re.search(r'<nav class="tabs" aria-label="Form">(.*?)</nav>', html, re.S)
    assert tabs
    assert f'href="/forms/{form.key}"' in tabs.group(1)
    assert f'href="/forms/{form.key}/settings"' in tabs.group(1)
    assert f'<a href="/forms/{form.key}/setup" aria-current="page">Set up</a>' in tabs.group(1)


# -- delete --------------------------------------------------------------------------------
def test_delete_asks_first_then_deletes_the_form_and_its_submissions(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    key, form_id = form.key, form.id
    make_delivery(db.session, make_submission(db.session, form))
    make_submission(db.session, form)
    auth.login(OWNER)

    asking = page_text(client, f"/forms/{key}/delete")
    assert "Delete this form?" in asking and "its 2 submission(s)" in asking
    assert db.session.get(Form, form_id) is not None

    response = post_form(client, f"/forms/{key}/delete")
    assert response.headers["Location"] == "/forms"
    assert "Form Contact deleted with its 2 submission(s)." in page_text(client, "/forms")
    db.session.expire_all()
    assert db.session.get(Form, form_id) is None
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert client.get(f"/forms/{key}/settings").status_code == 404


@pytest.mark.parametrize(
    ("back", "location"),
    [("/forms", "/forms"), ("https://evil.example/", None), ("//evil.example/", None)],
)
def test_disable_returns_to_a_page_inside_formrelay_only(
    client: FlaskClient, auth: AuthActions, back: str, location: str | None
) -> None:
    form = owner_form()
    auth.login(OWNER)
    response = post_form(client, "/forms", {"back": back}, action=f"/forms/{form.key}/disable")
    assert response.headers["Location"] == (location or f"/forms/{form.key}/settings")


def test_verification_mail_an_account_sends_is_limited_and_refusals_do_not_count(
    client: FlaskClient, auth: AuthActions
) -> None:
    """Ten links an hour, added or resent: an account cannot mail someone over and over."""
    form = owner_form()
    pending = form.recipients[1].id
    auth.login(OWNER)
    action = f"/forms/{form.key}/recipients"
    assert post_form(client, "/forms", {"email": "bad address"}, action=action).status_code == 400
    statuses = [
        post_form(client, "/forms", action=f"{action}/{pending}/resend").status_code
        for _ in range(10)
    ]
    assert statuses == [302] * 10
    limited = post_form(client, "/forms", {"email": "new@example.com"}, action=action)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert "Too many attempts" in limited.get_data(as_text=True)
    db.session.refresh(form)
    assert "new@example.com" not in [r.email for r in form.recipients]
    # Another account's limit is its own.
    other = make_form(db.session, owner=make_user(db.session, OTHER, admin=False))
    auth.logout()
    auth.login(OTHER)
    added = post_form(
        client, "/forms", {"email": "new@example.com"}, action=f"/forms/{other.key}/recipients"
    )
    assert added.status_code == 302


def test_the_owner_turns_files_on_with_limits_on_the_settings_page(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    auth.login(OWNER)
    page = client.get(f"/forms/{form.key}/settings").get_data(as_text=True)
    assert "File uploads" in page and 'name="max_file_mb"' in page
    response = post_form(
        client,
        f"/forms/{form.key}/settings",
        {
            "files_enabled": "y",
            "max_file_mb": "15",
            "max_total_mb": "30",
            "max_files": "2",
            "allowed_types": "pdf, png",
            "retention_days": "90",
        },
        action=f"/forms/{form.key}/uploads",
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/forms/{form.key}/settings#uploads"
    db.session.refresh(form)
    assert (form.files_enabled, form.max_file_mb, form.max_total_mb, form.max_files) == (
        True,
        15,
        30,
        2,
    )
    assert (form.allowed_types, form.retention_days) == ("pdf,png", 90)


def test_upload_limits_that_contradict_each_other_are_refused_on_the_page(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    auth.login(OWNER)
    response = post_form(
        client,
        f"/forms/{form.key}/settings",
        {"files_enabled": "y", "max_file_mb": "50", "max_total_mb": "10", "max_files": "2",
         "allowed_types": "pdf"},
        action=f"/forms/{form.key}/uploads",
    )  # fmt: skip
    assert response.status_code == 400
    assert (
        "One file may not be larger (50 MB) than all files together (10 MB)."
        in response.get_data(as_text=True)
    )
    db.session.refresh(form)
    assert not form.files_enabled


def test_the_setup_snippet_sends_files_once_the_form_takes_them(
    client: FlaskClient, auth: AuthActions
) -> None:
    form = owner_form()
    auth.login(OWNER)
    plain = client.get(f"/forms/{form.key}/setup").get_data(as_text=True)
    assert "multipart/form-data" not in plain and 'type="file"' not in plain
    form.files_enabled = True
    db.session.commit()
    page = client.get(f"/forms/{form.key}/setup").get_data(as_text=True)
    assert 'method="POST" enctype="multipart/form-data"&gt;' in page
    assert '&lt;input type="file" name="attachment"&gt;' in page
