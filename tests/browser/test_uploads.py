"""Files sent by Chromium: a plain HTML form with enctype="multipart/form-data", and
@formspree/ajax sending its FormData, both from another site."""

from __future__ import annotations

from html import escape
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from formrelay.extensions import db

from ..uploads import PDF, attachments, make_files_form
from .conftest import FormSite, LiveFormrelay
from .test_formspree_clients import _html, _js

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def cv(tmp_path: Path) -> Path:
    path = tmp_path / "Lebenslauf Zoë.pdf"
    path.write_bytes(PDF + b"x" * 200_000)
    return path


def test_a_plain_html_form_uploads_a_file(
    page: Page, site: FormSite, formrelay: LiveFormrelay, cv: Path
) -> None:
    form = make_files_form()
    action = f"{formrelay.url}/f/{form.key}"
    url = site.publish(
        "/apply.html",
        _html(
            "Apply",
            f"""<form method="post" action="{escape(action)}" enctype="multipart/form-data">
              <input type="text" name="name">
              <input type="file" name="cv">
              <input type="file" name="letter">
              <button type="submit">Send</button>
            </form>""",
        ),
    )
    page.goto(url)
    page.fill("[name=name]", "Zoë")
    page.set_input_files("[name=cv]", str(cv))
    page.click("button[type=submit]")

    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    assert page.url.startswith(f"{formrelay.url}/thanks")
    (submission,) = formrelay.submissions()
    assert submission.fields == [["name", "Zoë"]]
    [a] = attachments()
    # The empty second file input sent no file.
    assert (a.field, a.filename, a.size) == ("cv", "Lebenslauf Zoë.pdf", cv.stat().st_size)


def test_a_plain_html_form_over_the_limit_shows_the_error_naming_the_file(
    page: Page, site: FormSite, formrelay: LiveFormrelay, tmp_path: Path
) -> None:
    form = make_files_form(max_file_mb=1)
    big = tmp_path / "big.pdf"
    big.write_bytes(PDF + b"x" * (1024 * 1024))
    action = f"{formrelay.url}/f/{form.key}"
    page.goto(
        site.publish(
            "/apply.html",
            _html(
                "Apply",
                f"""<form method="post" action="{escape(action)}" enctype="multipart/form-data">
                  <input type="file" name="cv"><button type="submit">Send</button></form>""",
            ),
        )
    )
    page.set_input_files("[name=cv]", str(big))
    page.click("button[type=submit]")
    expect(page.locator("p.error")).to_have_text(
        "big.pdf is larger than the 1 MB accepted for one file."
    )
    assert formrelay.submissions() == [] and attachments() == []


def open_ajax_upload_form(page: Page, site: FormSite, formrelay: LiveFormrelay, key: str) -> None:
    config = (
        f"{{formElement: '#apply', formId: {_js(key)}, origin: {_js(formrelay.url)}, "
        "onInit: function () { document.body.dataset.ready = 'yes'; }}"
    )
    body = f"""
    <form id="apply" novalidate>
      <input type="email" name="email" data-fs-field>
      <input type="file" name="cv" data-fs-field>
      <span data-fs-error="cv"></span>
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
    page.goto(site.publish("/apply", _html("Apply (ajax)", body)))
    page.wait_for_selector("body[data-ready=yes]", state="attached")


def test_formspree_ajax_uploads_a_file(
    page: Page, client_site: FormSite, formrelay: LiveFormrelay, cv: Path
) -> None:
    key = make_files_form().key
    open_ajax_upload_form(page, client_site, formrelay, key)
    page.fill("[name=email]", "zoe@example.com")
    page.set_input_files("[name=cv]", str(cv))
    page.click("button[type=submit]")

    expect(page.locator("[data-fs-success]")).to_have_text("Thank you!")
    (submission,) = formrelay.submissions()
    assert submission.fields == [["email", "zoe@example.com"]]
    assert submission.origin == client_site.origin
    [a] = attachments()
    assert (a.filename, a.size, a.content_type) == (
        "Lebenslauf Zoë.pdf",
        cv.stat().st_size,
        "application/pdf",
    )


def test_formspree_ajax_shows_a_refused_file_by_its_field(
    page: Page, client_site: FormSite, formrelay: LiveFormrelay, tmp_path: Path
) -> None:
    key = make_files_form(allowed_types="pdf").key
    script = tmp_path / "setup.exe"
    script.write_bytes(b"MZ" + b"\x00" * 500)
    open_ajax_upload_form(page, client_site, formrelay, key)
    page.fill("[name=email]", "zoe@example.com")
    page.set_input_files("[name=cv]", str(script))
    page.click("button[type=submit]")

    expect(page.locator('[data-fs-error="cv"]')).to_have_text(
        "setup.exe: .exe files are not accepted; this form takes .pdf."
    )
    expect(page.locator("input[name=cv]")).to_have_attribute("aria-invalid", "true")
    assert formrelay.submissions() == []
    db.session.rollback()


def test_formspree_react_uploads_a_file(
    page: Page, client_site: FormSite, formrelay: LiveFormrelay, cv: Path
) -> None:
    from .test_formspree_clients import open_react_form

    key = make_files_form().key
    open_react_form(page, client_site, formrelay, key)
    page.get_by_label("Email").fill("zoe@example.com")
    page.get_by_label("Message").fill("My CV")
    page.get_by_label("Attachment").set_input_files(str(cv))
    page.get_by_role("button", name="Send").click()

    expect(page.locator("#success")).to_have_text("Thanks for your message!")
    (submission,) = formrelay.submissions()
    assert submission.fields == [["email", "zoe@example.com"], ["message", "My CV"]]
    [a] = attachments()
    assert (a.field, a.filename, a.size) == ("attachment", "Lebenslauf Zoë.pdf", cv.stat().st_size)
