"""The Spam and abuse section of a form's settings page (POST /forms/<key>/spam). Who may
use it (signed out, another user, no CSRF token) is tested with every form page in
test_forms_pages.py."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from formrelay.extensions import db
from formrelay.models import Form

from ..auth import AuthActions, post_form
from ..factories import make_form, make_user
from .shapes import post_json

OWNER = "owner@example.com"
EVERYTHING = {
    "allowed_domains": "example.org\n*.example.net",
    "allow_headerless": "y",
    "rate_limit": "5/minute;100/day",
    "captcha_provider": "recaptcha-v3",
    "captcha_secret": "s3cret",
    "captcha_threshold": "0.7",
    "captcha_action": "contact",
    "captcha_fail": "closed",
    "allow_cc": "y",
    "honeypot": "website",
    "max_links": "2",
    "blocked_words": "casino, viagra",
    "blocked_senders": "@spam.example",
    "blocked_addresses": "203.0.113.0/24",
    "min_seconds": "3",
    "notify_limit": "50",
}


@pytest.fixture
def form(app) -> Form:
    return make_form(db.session, owner=make_user(db.session, OWNER, admin=False))


def settings_page(form: Form) -> str:
    return f"/forms/{form.key}/settings"


def save(client: FlaskClient, form: Form, data: dict[str, str]):
    return post_form(client, settings_page(form), data, action=f"/forms/{form.key}/spam")


def test_the_settings_page_shows_the_spam_section_as_the_form_has_it(client, auth, form):
    auth.login(OWNER)
    html = client.get(settings_page(form)).get_data(as_text=True)
    assert '<h2 id="spam">Spam and abuse</h2>' in html
    assert 'value="_gotcha"' in html  # the honeypot's name
    assert "Blank: formrelay&#39;s default, 100000/minute" in html
    assert "http://forms.test/formrelay.js" in html
    assert 'name="allow_cc" type="checkbox" value="y">' in html  # off: not checked


def test_every_setting_is_saved_and_shown_back_without_the_secret(
    client: FlaskClient, auth: AuthActions, form: Form
):
    auth.login(OWNER)
    r = save(client, form, EVERYTHING)
    assert r.status_code == 302
    assert r.headers["Location"].endswith(f"/forms/{form.key}/settings#spam")
    db.session.refresh(form)
    assert (form.allowed_domains, form.allow_headerless, form.rate_limit) == (
        ["example.org", "*.example.net"],
        True,
        "5/minute;100/day",
    )
    assert (
        form.captcha_provider,
        form.captcha_secret,
        form.captcha_threshold,
        form.captcha_action,
        form.captcha_fail_open,
    ) == ("recaptcha-v3", "s3cret", 0.7, "contact", False)
    assert (form.allow_cc, form.honeypot, form.max_links, form.min_seconds) == (
        True,
        "website",
        2,
        3,
    )
    assert (form.blocked_words, form.blocked_senders, form.blocked_addresses) == (
        ["casino", "viagra"],
        ["@spam.example"],
        ["203.0.113.0/24"],
    )
    assert (form.akismet, form.notify_limit) == (False, 50)  # an unticked box is off
    html = client.get(settings_page(form)).get_data(as_text=True)
    assert "s3cret" not in html
    assert "(set: blank keeps it)" in html
    assert "Spam settings saved." in html

    # Saved again with a blank secret: the secret stays; blanks clear the other rules.
    r = save(
        client,
        form,
        {
            **{k: "" for k in EVERYTHING},
            "honeypot": "_gotcha",
            "captcha_provider": "recaptcha-v3",
            "captcha_fail": "open",
        },
    )
    assert r.status_code == 302
    db.session.refresh(form)
    assert (form.captcha_secret, form.allowed_domains, form.max_links, form.rate_limit) == (
        "s3cret",
        [],
        None,
        None,
    )
    assert (form.allow_cc, form.min_seconds, form.notify_limit) == (False, None, None)


def test_a_bad_value_is_shown_on_the_page_and_nothing_changes(client, auth, form):
    auth.login(OWNER)
    r = save(client, form, {**EVERYTHING, "blocked_addresses": "10.0.0.300"})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "is not an IP address or range" in html
    assert 'role="alert"' in html
    db.session.refresh(form)
    assert (form.allowed_domains, form.allow_cc) == ([], False)


def test_a_saved_rule_applies_to_the_next_submission(client, auth, form):
    auth.login(OWNER)
    assert post_json(client, form.key, {"m": "hi", "_cc": "x@example.com"}).status_code == 400
    save(
        client,
        form,
        {"honeypot": "_gotcha", "captcha_provider": "off", "captcha_fail": "open", "allow_cc": "y"},
    )
    assert post_json(client, form.key, {"m": "hi", "_cc": "x@example.com"}).status_code == 200


def test_the_setup_tab_offers_the_script_tag(client, auth, form):
    auth.login(OWNER)
    html = client.get(f"/forms/{form.key}/setup").get_data(as_text=True)
    assert "&lt;script src=&#34;http://forms.test/formrelay.js&#34; defer&gt;" in html or (
        '&lt;script src="http://forms.test/formrelay.js" defer&gt;' in html
    )
