"""formrelay.js in Chromium: a plain form on another site, sent with fetch, answered inline;
retried after a 503; and the plain POST when JavaScript is off."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from formrelay.extensions import db

from ..factories import make_form
from .conftest import FormSite, LiveFormrelay

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def contact_page(site: FormSite, formrelay: LiveFormrelay, key: str, extra: str = "") -> str:
    html = f"""<!doctype html>
    <html lang="en"><head><meta charset="utf-8"><title>Contact</title>
    <script src="{formrelay.url}/formrelay.js" defer></script></head><body>
    <form method="post" action="{formrelay.url}/f/{key}" data-formrelay-success="Thanks, Ann!">
      <label for="email">Email</label> <input id="email" type="text" name="email">
      <label for="message">Message</label> <textarea id="message" name="message"></textarea>
      {extra}
      <button type="submit">Send</button>
    </form></body></html>"""
    return site.publish("/contact.html", html)


def test_an_invalid_field_is_marked_inline_and_a_fix_is_sent(
    page: Page, site: FormSite, formrelay: LiveFormrelay
) -> None:
    form = make_form(db.session)
    page.goto(contact_page(site, formrelay, form.key))
    page.get_by_label("Email").fill("not an address")
    page.get_by_label("Message").fill("Hello")
    page.get_by_role("button", name="Send").click()

    email = page.get_by_label("Email")
    expect(email).to_have_attribute("aria-invalid", "true")
    note_id = email.get_attribute("aria-describedby")
    assert note_id
    expect(page.locator(f"#{note_id}")).to_contain_text("email")
    expect(page.get_by_role("alert")).to_have_text("Please correct the field marked.")
    assert page.url.endswith("/contact.html")  # no navigation
    assert formrelay.submissions() == []

    email.fill("ann@example.org")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Thanks, Ann!")
    expect(email).not_to_have_attribute("aria-invalid", "true")
    assert page.locator(".formrelay-error").count() == 0
    [stored] = formrelay.submissions()
    # The signed page-load time is not data.
    assert stored.fields == [["email", "ann@example.org"], ["message", "Hello"]]
    assert not stored.is_spam


def test_a_refusal_without_a_field_is_shown_as_an_alert(
    page: Page, site: FormSite, formrelay: LiveFormrelay
) -> None:
    form = make_form(db.session, allowed_domains=["www.example.org"])
    page.goto(contact_page(site, formrelay, form.key))
    page.get_by_label("Message").fill("Hello")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_have_text(
        "This form does not accept submissions from 127.0.0.1."
    )


def test_a_submission_sooner_than_the_forms_minimum_is_kept_as_spam(
    page: Page, site: FormSite, formrelay: LiveFormrelay
) -> None:
    form = make_form(db.session, min_seconds=60)
    page.goto(contact_page(site, formrelay, form.key))
    page.get_by_label("Message").fill("Hello")
    page.get_by_role("button", name="Send").click()
    # Answered like a success: a bot learns nothing.
    expect(page.get_by_role("status")).to_have_text("Thanks, Ann!")
    [stored] = formrelay.submissions()
    assert stored.is_spam
    assert stored.spam_reason.endswith("s after the page loaded (at least 60 s expected)")


class FailFirst:
    """formrelay behind a proxy whose first `n` POSTs to /f/ answer 503 (with CORS)."""

    def __init__(self, app: Any, n: int) -> None:
        self.app, self.left = app, n

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and self.left > 0:
            self.left -= 1
            start_response(
                "503 Service Unavailable",
                [
                    ("Content-Type", "application/json"),
                    ("Access-Control-Allow-Origin", "*"),
                    ("Retry-After", "1"),
                ],
            )
            return [b'{"ok": false, "error": "busy", "errors": []}']
        return self.app(environ, start_response)


def test_a_503_is_retried_with_backoff_and_then_succeeds(
    page: Page, site: FormSite, formrelay: LiveFormrelay, formrelay_server
) -> None:
    form = make_form(db.session)
    formrelay_server.app = FailFirst(formrelay.app, 2)
    page.goto(contact_page(site, formrelay, form.key))
    page.get_by_label("Message").fill("Hello")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Thanks, Ann!", timeout=10_000)
    posts = formrelay.requests_to(f"/f/{form.key}", "POST")
    assert len(posts) == 3
    assert len(formrelay.submissions()) == 1


class BrokenFirst:
    """The first POST gets a proxy's error page without CORS headers: to the page's fetch
    that is a network error, as a dropped connection is."""

    def __init__(self, app: Any) -> None:
        self.app, self.broken = app, True

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and self.broken:
            self.broken = False
            start_response("502 Bad Gateway", [("Content-Type", "text/html")])
            return [b"<h1>Bad gateway</h1>"]
        return self.app(environ, start_response)


def test_a_network_error_is_retried_too(
    page: Page, site: FormSite, formrelay: LiveFormrelay, formrelay_server
) -> None:
    form = make_form(db.session)
    formrelay_server.app = BrokenFirst(formrelay.app)
    page.goto(contact_page(site, formrelay, form.key))
    page.get_by_label("Message").fill("Hello")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Thanks, Ann!", timeout=10_000)
    assert len(formrelay.requests_to(f"/f/{form.key}", "POST")) == 2
    assert len(formrelay.submissions()) == 1


def test_three_503s_give_up_saying_so(
    page: Page, site: FormSite, formrelay: LiveFormrelay, formrelay_server
) -> None:
    form = make_form(db.session)
    formrelay_server.app = FailFirst(formrelay.app, 3)
    page.goto(contact_page(site, formrelay, form.key))
    page.get_by_label("Message").fill("Hello")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_have_text("busy", timeout=10_000)
    assert len(formrelay.requests_to(f"/f/{form.key}", "POST")) == 3
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_without_javascript_the_form_posts_as_plain_html(
    browser: Browser, site: FormSite, formrelay: LiveFormrelay
) -> None:
    form = make_form(db.session)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(contact_page(site, formrelay, form.key))
        page.get_by_label("Email").fill("ann@example.org")
        page.get_by_label("Message").fill("Hello")
        page.get_by_role("button", name="Send").click()
        page.wait_for_url(f"{formrelay.url}/thanks**")
        [stored] = formrelay.submissions()
        assert stored.fields == [["email", "ann@example.org"], ["message", "Hello"]]
    finally:
        context.close()


def test_the_script_is_small_uncached_and_signs_each_load(formrelay: LiveFormrelay) -> None:
    client = formrelay.app.test_client()
    first = client.get("/formrelay.js")
    time.sleep(0.01)
    second = client.get("/formrelay.js")
    assert first.status_code == 200
    assert first.mimetype == "text/javascript"
    assert first.headers["Cache-Control"] == "no-store"
    assert len(first.data) < 10_000
    assert "__FORMRELAY_PAGE_LOAD__" not in first.text
    assert first.text != second.text  # each load signs its own time
