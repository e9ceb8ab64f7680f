"""Formspree's own client libraries, unchanged but for their endpoint option, against formrelay.

@formspree/ajax (its browser build), @formspree/core (its ES module) and @formspree/react (the
documented example, bundled) run in Chromium on a page of another origin, so each submission
goes through a real CORS preflight.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

from formrelay.extensions import db

from ..factories import make_form
from .conftest import FormSite, LiveFormrelay

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EMAIL_MESSAGE = "The email field must be a valid e-mail address."
NO_FORM_MESSAGE = "There is no form at this address."


def _js(value: object) -> str:
    """A value written into a page's script (JSON is valid JavaScript)."""
    return json.dumps(value)


def _html(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body>{body}</body></html>"
    )


def _assert_preflight_passed(formrelay: LiveFormrelay, path: str, origin: str) -> None:
    """The browser asked before posting, from the site's origin, for Formspree's headers."""
    (preflight,) = formrelay.requests_to(path, "OPTIONS")
    assert preflight.headers["origin"] == origin
    asked = {h.strip() for h in preflight.headers["access-control-request-headers"].split(",")}
    assert {"formspree-client", "formspree-session-data"} <= asked
    (post,) = formrelay.requests_to(path, "POST")
    assert post.headers["origin"] == origin


# -- @formspree/ajax -----------------------------------------------------------------------


def open_ajax_form(page: Page, site: FormSite, formrelay: LiveFormrelay, key: str) -> None:
    """A page set up as @formspree/ajax's README shows, with `origin` pointing at formrelay."""
    config = (
        f"{{formElement: '#contact', formId: {_js(key)}, origin: {_js(formrelay.url)}, "
        "onInit: function () { document.body.dataset.ready = 'yes'; }}"
    )
    body = f"""
    <form id="contact" novalidate>
      <input type="email" name="email" data-fs-field>
      <span data-fs-error="email"></span>
      <textarea name="message" data-fs-field></textarea>
      <div data-fs-error=""></div>
      <div data-fs-success></div>
      <button type="submit">Send</button>
    </form>
    <script>
      window.formspree = window.formspree || function () {{
        (formspree.q = formspree.q || []).push(arguments);
      }};
      formspree("initForm", {config});
    </script>
    <script src="/vendor/formspree-ajax.js" defer></script>"""
    page.goto(site.publish("/contact", _html("Contact (ajax)", body)))
    page.wait_for_selector("body[data-ready=yes]", state="attached")


def test_ajax_submission_shows_success_and_is_stored(
    page: Page, client_site: FormSite, formrelay: LiveFormrelay
) -> None:
    key = make_form(db.session).key
    open_ajax_form(page, client_site, formrelay, key)
    page.fill("[name=email]", "ann@example.com")
    page.fill("[name=message]", "Hello from ajax")
    page.click("button[type=submit]")

    expect(page.locator("[data-fs-success]")).to_have_text("Thank you!")
    expect(page.locator("[data-fs-success]")).to_be_visible()
    expect(page.locator("[name=email]")).to_have_value("")  # the library resets the form
    (submission,) = formrelay.submissions()
    assert submission.fields == [["email", "ann@example.com"], ["message", "Hello from ajax"]]
    assert submission.reply_to == "ann@example.com"
    assert submission.origin == client_site.origin
    _assert_preflight_passed(formrelay, f"/f/{key}", client_site.origin)


def test_ajax_invalid_email_shows_the_field_error(
    page: Page, client_site: FormSite, formrelay: LiveFormrelay
) -> None:
    key = make_form(db.session).key
    open_ajax_form(page, client_site, formrelay, key)
    page.fill("[name=email]", "not-an-address")
    page.fill("[name=message]", "Hello")
    page.click("button[type=submit]")

    expect(page.locator('[data-fs-error="email"]')).to_have_text(EMAIL_MESSAGE)
    expect(page.locator('[data-fs-error="email"]')).to_be_visible()
    expect(page.locator("input[name=email]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("textarea[name=message]")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-fs-error=""]')).to_be_hidden()
    expect(page.locator("[data-fs-success]")).to_be_hidden()
    assert formrelay.submissions() == []


def test_ajax_unknown_form_shows_a_form_error(
    page: Page, client_site: FormSite, formrelay: LiveFormrelay
) -> None:
    open_ajax_form(page, client_site, formrelay, "no-such-form")
    page.fill("[name=email]", "ann@example.com")
    page.click("button[type=submit]")

    expect(page.locator('[data-fs-error=""]')).to_have_text(NO_FORM_MESSAGE)
    expect(page.locator('[data-fs-error=""]')).to_be_visible()
    expect(page.locator("[data-fs-success]")).to_be_hidden()


# -- @formspree/core -----------------------------------------------------------------------


def open_core_page(page: Page, site: FormSite, formrelay: LiveFormrelay) -> None:
    """A page whose module script exposes core's submitForm, `endpoint` pointing at formrelay."""
    script = f"""
    <script type="module">
      import {{ createClient }} from "/vendor/formspree-core.mjs";
      window.submitWithCore = async (key, data, project) => {{
        const client = createClient(project ? {{ project }} : {{}});
        const result = await client.submitForm(key, data, {{ endpoint: {_js(formrelay.url)} }});
        if (result.kind !== "error") return {{ kind: result.kind, next: result.next }};
        return {{
          kind: result.kind,
          formErrors: result.getFormErrors(),
          fieldErrors: Object.fromEntries(result.getAllFieldErrors()),
        }};
      }};
    </script>"""
    page.goto(site.publish("/core", _html("core", script)))
    page.wait_for_function("() => typeof window.submitWithCore === 'function'")


def submit_with_core(
    page: Page, key: str, data: dict[str, Any], project: str | None = None
) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        "([key, data, project]) => window.submitWithCore(key, data, project)",
        [key, data, project],
    )
    return result


@pytest.mark.parametrize("project", [None, "marketing-site"], ids=["plain", "project"])
def test_core_json_submission_succeeds_with_next(
    page: Page,
    client_site: FormSite,
    formrelay: LiveFormrelay,
    project: str | None,
) -> None:
    key = make_form(db.session).key
    open_core_page(page, client_site, formrelay)

    result = submit_with_core(
        page, key, {"email": "bo@example.com", "message": "Hi", "count": 3}, project
    )

    # fetch() sends only the origin as Referer across origins (Chromium's default policy)
    back = urlencode({"back": client_site.origin + "/"})
    assert result == {"kind": "success", "next": f"{formrelay.url}/thanks?{back}"}
    (submission,) = formrelay.submissions()
    assert submission.fields == [["email", "bo@example.com"], ["message", "Hi"], ["count", "3"]]
    path = f"/p/{project}/f/{key}" if project else f"/f/{key}"
    _assert_preflight_passed(formrelay, path, client_site.origin)
    (post,) = formrelay.requests_to(path, "POST")
    assert post.headers["content-type"] == "application/json"
    assert post.headers["formspree-client"] == "@formspree/core@4.0.0"


@pytest.mark.parametrize(
    ("data", "form_errors", "field_errors"),
    [
        (
            {"email": "nope", "message": "Hi"},
            [],
            {"email": [{"code": "TYPE_EMAIL", "message": EMAIL_MESSAGE}]},
        ),
        (
            {"message": "   "},
            [{"code": "EMPTY", "message": "The form was submitted with no data."}],
            {},
        ),
    ],
    ids=["invalid-email", "empty"],
)
def test_core_reads_formrelay_errors_with_their_codes(
    page: Page,
    client_site: FormSite,
    formrelay: LiveFormrelay,
    data: dict[str, str],
    form_errors: list[dict[str, str]],
    field_errors: dict[str, list[dict[str, str]]],
) -> None:
    key = make_form(db.session).key
    open_core_page(page, client_site, formrelay)

    result = submit_with_core(page, key, data)

    assert result == {"kind": "error", "formErrors": form_errors, "fieldErrors": field_errors}
    assert formrelay.submissions() == []


def test_core_unknown_form_is_form_not_found(
    page: Page, client_site: FormSite, formrelay: LiveFormrelay
) -> None:
    open_core_page(page, client_site, formrelay)

    result = submit_with_core(page, "no-such-form", {"email": "bo@example.com"})

    assert result == {
        "kind": "error",
        "formErrors": [{"code": "FORM_NOT_FOUND", "message": NO_FORM_MESSAGE}],
        "fieldErrors": {},
    }


# -- @formspree/react ----------------------------------------------------------------------


def open_react_form(page: Page, site: FormSite, formrelay: LiveFormrelay, key: str) -> None:
    """tests/js/react-app.jsx: useForm(key, {endpoint}) with ValidationError, as documented."""
    body = f"""
    <div id="root"></div>
    <script>
      window.FORMRELAY_KEY = {_js(key)};
      window.FORMRELAY_ORIGIN = {_js(formrelay.url)};
    </script>
    <script src="/vendor/react-app.js"></script>"""
    page.goto(site.publish("/react", _html("Contact (react)", body)))
    page.wait_for_selector("form#contact")


def test_react_submission_succeeds_and_is_stored(
    page: Page, client_site: FormSite, formrelay: LiveFormrelay
) -> None:
    key = make_form(db.session).key
    open_react_form(page, client_site, formrelay, key)
    page.fill("#email", "cy@example.com")
    page.fill("#message", "Hello from React")
    page.click("button[type=submit]")

    expect(page.locator("#success")).to_have_text("Thanks for your message!")
    (submission,) = formrelay.submissions()
    assert submission.fields == [["email", "cy@example.com"], ["message", "Hello from React"]]
    (post,) = formrelay.requests_to(f"/f/{key}", "POST")
    assert post.headers["formspree-client"] == "@formspree/react@3.0.0 @formspree/core@4.0.0"


def test_react_invalid_email_is_shown_by_validation_error(
    page: Page, client_site: FormSite, formrelay: LiveFormrelay
) -> None:
    key = make_form(db.session).key
    open_react_form(page, client_site, formrelay, key)
    page.fill("#email", "not-an-address")
    page.fill("#message", "Hello")
    page.click("button[type=submit]")

    expect(page.locator("#email-error")).to_have_text(f"Email {EMAIL_MESSAGE}")
    expect(page.locator("#form-error")).to_have_count(0)
    expect(page.locator("#success")).to_have_count(0)
    assert formrelay.submissions() == []
