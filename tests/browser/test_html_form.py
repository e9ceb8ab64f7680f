"""A plain HTML form on another site, posted by Chromium with no JavaScript at all."""

from __future__ import annotations

from html import escape

import pytest
from playwright.sync_api import Page, expect

from formrelay.extensions import db

from ..factories import make_form
from .conftest import FormSite, LiveFormrelay

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_contact_page(
    page: Page,
    site: FormSite,
    action: str,
    *,
    next_url: str | None = None,
    referrer_policy: str | None = None,
) -> str:
    """Publish and open a page with a contact form posting to `action`; return its URL."""
    meta = f'<meta name="referrer" content="{referrer_policy}">' if referrer_policy else ""
    hidden = f'<input type="hidden" name="_next" value="{escape(next_url)}">' if next_url else ""
    html = f"""<!doctype html>
    <html lang="en"><head><meta charset="utf-8">{meta}<title>Contact us</title></head><body>
    <form method="post" action="{escape(action)}">
      <input type="text" name="email">
      <textarea name="message"></textarea>
      {hidden}
      <button type="submit">Send</button>
    </form>
    </body></html>"""
    url = site.publish("/about/contact.html", html)
    page.goto(url)
    return url


def fill_and_send(page: Page, email: str, message: str = "Hello") -> None:
    page.fill("[name=email]", email)
    page.fill("[name=message]", message)
    page.click("button[type=submit]")


@pytest.mark.parametrize(
    ("referrer_policy", "back_to_page"),
    [(None, False), ("no-referrer-when-downgrade", True)],
    ids=["default-referrer-policy", "full-referrer"],
)
def test_post_lands_on_thanks_page_linking_back(
    page: Page,
    site: FormSite,
    formrelay: LiveFormrelay,
    referrer_policy: str | None,
    back_to_page: bool,
) -> None:
    key = make_form(db.session).key
    page_url = open_contact_page(
        page, site, f"{formrelay.url}/f/{key}", referrer_policy=referrer_policy
    )

    with page.expect_navigation() as navigation:
        fill_and_send(page, "ann@example.com", "Hello from a plain form")

    thanks = navigation.value
    assert thanks is not None and thanks.status == 200
    post = thanks.request.redirected_from
    assert post is not None and post.method == "POST"
    assert post.url == f"{formrelay.url}/f/{key}"
    redirect = post.response()
    assert redirect is not None and redirect.status == 303
    assert page.url.startswith(f"{formrelay.url}/thanks?back=")
    expect(page.locator("h1")).to_have_text("Thank you!")
    (submission,) = formrelay.submissions()
    assert submission.fields == [
        ["email", "ann@example.com"],
        ["message", "Hello from a plain form"],
    ]
    assert submission.origin == site.origin

    # The link goes back to what the browser named as the referrer: by default, across
    # origins, Chromium sends only the site's origin, not the page's path.
    back = page.get_by_role("link", name="Return to the site")
    expect(back).to_have_attribute("href", page_url if back_to_page else site.origin + "/")
    site.publish("/", "<!doctype html><title>Home</title><h1>Home</h1>")
    back.click()
    page.wait_for_url(page_url if back_to_page else site.origin + "/")


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "path"])
def test_next_field_sends_the_browser_there(
    page: Page, site: FormSite, formrelay: LiveFormrelay, relative: bool
) -> None:
    key = make_form(db.session).key
    landing = site.publish(
        "/thanks-for-writing", "<!doctype html><title>Landed</title><h1>Landed</h1>"
    )
    open_contact_page(
        page,
        site,
        f"{formrelay.url}/f/{key}",
        next_url="/thanks-for-writing" if relative else landing,
    )

    with page.expect_navigation(url=landing) as navigation:
        fill_and_send(page, "ann@example.com")

    assert navigation.value is not None and navigation.value.status == 200
    expect(page.locator("h1")).to_have_text("Landed")
    (submission,) = formrelay.submissions()
    assert submission.fields == [["email", "ann@example.com"], ["message", "Hello"]]


def test_invalid_email_shows_an_error_page_with_a_way_back(
    page: Page, site: FormSite, formrelay: LiveFormrelay
) -> None:
    key = make_form(db.session).key
    open_contact_page(page, site, f"{formrelay.url}/f/{key}")

    with page.expect_navigation() as navigation:
        fill_and_send(page, "not-an-address")

    response = navigation.value
    assert response is not None and response.status == 400
    assert response.headers["content-type"].startswith("text/html")
    assert page.url == f"{formrelay.url}/f/{key}"
    expect(page.locator("h1")).to_have_text("The form could not be sent")
    expect(page.locator("p.error")).to_have_text("The email field must be a valid e-mail address.")
    back = page.get_by_role("link", name="Go back")
    expect(back).to_have_attribute("href", site.origin + "/")  # the Referer Chromium sent
    assert formrelay.submissions() == []
