"""An owner's first hour, in Chromium: register, confirm, log in, create a form, paste its
snippet into a page on another site, receive a submission, find it, search it, export it,
mark it spam and back, log out. Also: the pages at 360 px, and submitted markup that runs
nowhere. Screenshots of the main pages go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, expect

from formrelay.extensions import db
from formrelay.services.suppressions import suppress
from formrelay.worker import make_worker

from ..factories import PASSWORD, make_form, make_submission, make_user
from ..mailserver import MailServer, point_app_at
from .conftest import ARTIFACTS, TIMEOUT_MS, FormSite, LiveFormrelay

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OWNER = "ann@example.org"


@pytest.fixture
def mail() -> Iterator[MailServer]:
    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture
def app_config(app_config: dict[str, object], mail: MailServer) -> dict[str, object]:
    point_app_at(app_config, mail.port)
    return {**app_config, "registration": "open"}


def deliver(app: Flask) -> None:
    """Run the delivery worker once: what the dashboard queued reaches the SMTP server."""
    make_worker(app).drain()


def link_in_last_mail(mail: MailServer, to: str, path: str) -> str:
    for received in reversed(mail.received):
        if to in received.rcpt_tos:
            body = received.message.get_body(("plain",))
            assert body is not None
            found = re.search(rf"https?://\S+{re.escape(path)}\S+", body.get_content())
            if found:
                return found.group(0)
    raise AssertionError(f"no mail to {to} with a {path} link")


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"dashboard-{name}.png", full_page=True)


def log_in(page: Page, base: str, email: str = OWNER, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/forms")


def test_an_owner_goes_from_registration_to_an_exported_submission(
    page: Page, formrelay: LiveFormrelay, site: FormSite, mail: MailServer, app: Flask
) -> None:
    base = formrelay.url
    # Register and confirm, the link read from the mail the worker sent.
    page.goto(f"{base}/register")
    shoot(page, "register")
    page.get_by_label("Email").fill(OWNER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("main")).to_contain_text("inbox")
    deliver(app)
    page.goto(link_in_last_mail(mail, OWNER, "/confirm/"))

    # Log in (the confirmation may have signed us in already: log out first if so).
    if "/login" not in page.url:
        page.goto(f"{base}/forms")
        if page.get_by_role("button", name="Log out").count():
            page.get_by_role("button", name="Log out").click()
    log_in(page, base)
    shoot(page, "forms-empty")

    # Create a form notifying the owner's own confirmed address (verified at once).
    page.get_by_role("link", name="New form").click()
    page.get_by_label("Name").fill("Contact")
    page.get_by_label("Send submissions to").fill(OWNER)
    page.get_by_role("button", name="Create form").click()
    expect(page.locator("h1")).to_contain_text("Contact")
    key = _only_form_key()

    # The Set up tab's snippet, pasted into a page served from another port.
    page.goto(f"{base}/forms/{key}/setup")
    shoot(page, "setup")
    snippet = page.locator("pre code").first.inner_text()
    assert f"{base}/f/{key}" in snippet
    contact = site.publish(
        "/contact.html",
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Contact</title>'
        f"</head><body>{snippet}</body></html>",
    )
    visitor = page.context.browser.new_context() if page.context.browser else None
    assert visitor is not None
    try:
        visit = visitor.new_page()
        visit.set_default_timeout(TIMEOUT_MS)
        visit.goto(contact)
        visit.fill("[name=email]", "bob@example.net")
        visit.fill("[name=message]", "Do you ship marmalade to Reykjavik?")
        with visit.expect_navigation():
            visit.click("button[type=submit]")
        expect(visit.locator("h1")).to_have_text("Thank you!")
    finally:
        visitor.close()
    deliver(app)
    assert any(OWNER in r.rcpt_tos and "marmalade" in r.content.decode() for r in mail.received)

    # Find it in the dashboard, then search for it.
    page.goto(f"{base}/forms/{key}")
    expect(page.locator("main")).to_contain_text("marmalade")
    shoot(page, "submissions")
    page.get_by_label("Search").fill("reykjav*")
    page.get_by_label("Search").press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=reykjav"))
    expect(page.locator("main")).to_contain_text("marmalade")
    page.get_by_label("Search").fill("pineapple")
    page.get_by_label("Search").press("Enter")
    expect(page.locator("main")).not_to_contain_text("marmalade")

    # Export CSV with the page's cookies.
    export = page.context.request.get(f"{base}/forms/{key}/export.csv")
    assert export.status == 200
    rows = list(csv.reader(io.StringIO(export.text())))
    assert rows[0][:2] == ["id", "time"] and rows[0][2:] == ["email", "message"]
    assert rows[1][2:] == ["bob@example.net", "Do you ship marmalade to Reykjavik?"]

    # Open it, mark it spam, find it in the spam folder, and back.
    page.goto(f"{base}/forms/{key}")
    open_first_submission(page)
    shoot(page, "submission")
    expect(page.locator("main")).to_contain_text("Do you ship marmalade to Reykjavik?")
    page.get_by_role("button", name="Mark as spam").click()
    page.goto(f"{base}/forms/{key}?folder=spam")
    expect(page.locator("main")).to_contain_text("marmalade")
    page.goto(f"{base}/forms/{key}")
    expect(page.locator("main")).not_to_contain_text("marmalade")
    page.goto(f"{base}/forms/{key}?folder=spam")
    open_first_submission(page)
    page.get_by_role("button", name="Not spam").click()
    page.goto(f"{base}/forms/{key}")
    expect(page.locator("main")).to_contain_text("marmalade")

    # Log out: the dashboard asks to log in again.
    page.get_by_role("button", name="Log out").click()
    page.goto(f"{base}/forms")
    expect(page).to_have_url(re.compile(r"/login"))


def open_first_submission(page: Page) -> None:
    """Open the newest submission of the list on the page (its time links to it)."""
    page.locator("tbody a[href*='/submissions/']").first.click()
    page.wait_for_url(re.compile(r"/submissions/\d+$"))


def _only_form_key() -> str:
    from sqlalchemy import select

    from formrelay.models import Form

    db.session.rollback()
    return db.session.scalars(select(Form.key)).one()


# -- the same pages on a phone -----------------------------------------------------------


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 360, "height": 740})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


def test_the_main_pages_fit_a_360_px_screen(
    phone: BrowserContext, formrelay: LiveFormrelay
) -> None:
    owner = make_user(db.session, OWNER)
    form = make_form(db.session, owner=owner, recipients=[OWNER])
    submission = make_submission(
        db.session, form, fields=[("email", "bob@example.net"), ("message", "word " * 80)]
    )
    suppress(
        db.session(),
        "a-rather-long-address-that-bounced@example.net",
        reason="bounce",
        source="ses",
        detail="smtp; 550 5.1.1 <a-rather-long-address-that-bounced@example.net>... unknown",
    )
    db.session.commit()
    page = phone.new_page()
    log_in(page, formrelay.url)
    pages = {
        "forms": "/forms",
        "submissions": f"/forms/{form.key}",
        "submission": f"/submissions/{submission.id}",
        "settings": f"/forms/{form.key}/settings",
        "setup": f"/forms/{form.key}/setup",
        "account": "/account",
        "admin": "/admin",
        "suppressions": "/admin/suppressions",
    }
    for name, path in pages.items():
        response = page.goto(formrelay.url + path)
        assert response is not None and response.status == 200, path
        shoot(page, f"360-{name}")
        # Wide content (tables, code) scrolls inside its own box; the page itself does not.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{path} is {width} px wide"


# -- submitted markup runs nowhere ----------------------------------------------------------

HOSTILE = [
    ("name", "<script>window.__pwned = 'script'</script>"),
    ("email", "x@example.com"),
    ("message", "<img src=x onerror=\"window.__pwned='img'\"> and <svg onload=alert(1)>"),
    ("<b onmouseover=alert(1)>field</b>", "\"><script>window.__pwned='attr'</script>"),
]


def test_submitted_markup_runs_on_no_page(page: Page, formrelay: LiveFormrelay) -> None:
    owner = make_user(db.session, OWNER)
    form = make_form(db.session, owner=owner, recipients=[OWNER])
    submission = make_submission(db.session, form, fields=HOSTILE)
    db.session.commit()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, formrelay.url)
    for path in (
        "/forms",
        f"/forms/{form.key}",
        f"/forms/{form.key}?q=script",
        "/submissions",
        f"/submissions/{submission.id}",
    ):
        response = page.goto(formrelay.url + path)
        assert response is not None and response.status == 200, path
        assert page.evaluate("window.__pwned") is None, path
        assert page.locator("main script, main img").count() == 0, path
        assert page.locator("[onerror], [onload], [onmouseover]").count() == 0, path
    assert dialogs == []
    page.goto(f"{formrelay.url}/submissions/{submission.id}")
    expect(page.locator("main")).to_contain_text("<script>window.__pwned = 'script'</script>")
