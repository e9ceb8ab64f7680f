"""URLs checked as browsers read them (the WHATWG URL Standard, through ada), and followed
exactly as checked: `_next`, the form's redirect, Origin and Referer against the form's
allowed domains, and the log-in `next`. The cases are in url_cases.py, which the browser
test also checks against Chromium."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from formrelay.extensions import db
from formrelay.models import Form
from formrelay.services import forms, spam
from formrelay.services.errors import InvalidInput

from ..auth import AuthActions
from ..conftest import BASE_URL
from ..factories import make_form, make_user
from .shapes import assert_refused, post_html, post_json
from .url_cases import ALLOWED, LOGIN_LOCAL, LOGIN_OFF_SITE, OFF_SITE, ON_SITE, PAGE


@pytest.fixture
def guarded(app) -> Form:
    """A form whose owner listed its sites as an owner does (normalised by parse_domains)."""
    form = make_form(db.session)
    spam.update_spam_settings(db.session, form, spam.SpamChanges(allowed_domains=ALLOWED))
    db.session.commit()
    return form


def test_allowed_domains_are_kept_as_a_browser_writes_their_hosts(guarded):
    assert guarded.allowed_domains == ["good.example", "xn--bcher-kva.example", "127.0.0.1"]


# -- _next ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("next_url", "host"), OFF_SITE)
def test_next_that_a_browser_reads_as_another_host_is_refused(client, guarded, next_url, host):
    message = f"The _next field must point to one of this form's sites, not {host}."
    data = {"message": "hi", "_next": next_url}
    assert_refused(client, guarded.key, data, 400, "INVALID_NEXT", message, "_next", Referer=PAGE)


@pytest.mark.parametrize(("next_url", "location"), ON_SITE)
def test_next_on_an_allowed_host_sends_the_browser_to_the_url_as_checked(
    client, guarded, next_url, location
):
    data = {"message": "hi", "_next": next_url}
    r = post_html(client, guarded.key, data, Referer=PAGE)
    assert (r.status_code, r.headers["Location"]) == (303, location)
    assert post_json(client, guarded.key, data, Referer=PAGE).json["next"] == location


@pytest.mark.parametrize(
    ("next_url", "message"),
    [
        (
            "https://evil.example\t\\@good.example/",
            "The _next field must not contain control characters.",
        ),
        ("javascript:alert(1)", "The _next field must be an http(s) URL or a path."),
        ("https://good.example:99999/", "The _next field is not a valid URL."),
        ("https://[good.example]/", "The _next field is not a valid URL."),
    ],
)
def test_next_that_is_no_web_address_is_refused_saying_why(client, guarded, next_url, message):
    data = {"message": "hi", "_next": next_url}
    assert_refused(client, guarded.key, data, 400, "INVALID_NEXT", message, "_next", Referer=PAGE)


def test_honeypot_spam_is_never_sent_off_the_forms_sites(client, guarded):
    """A bot learns nothing, and no one is sent elsewhere through a spam submission."""
    data = {"message": "hi", "_gotcha": "x", "_next": "https://evil.example\\@good.example/"}
    r = post_html(client, guarded.key, data, Referer=PAGE)
    thanks = f"{BASE_URL}/thanks?back=https%3A%2F%2Fgood.example%2Fcontact"
    assert (r.status_code, r.headers["Location"]) == (303, thanks)


# -- the form's redirect -------------------------------------------------------------------------
@pytest.mark.parametrize(("redirect", "host"), [row for row in OFF_SITE if "://" in row[0]])
def test_a_redirect_that_a_browser_reads_as_another_host_is_refused(guarded, redirect, host):
    with pytest.raises(InvalidInput) as refused:
        forms.update_form(db.session, guarded, forms.FormChanges(redirect_url=redirect))
    assert str(refused.value) == (
        "The redirect must point to one of the form's allowed domains "
        f"(good.example, xn--bcher-kva.example, 127.0.0.1), not {host}."
    )


def test_the_forms_redirect_is_kept_and_followed_as_a_browser_reads_it(client, guarded):
    forms.update_form(
        db.session, guarded, forms.FormChanges(redirect_url="https://%67ood.example/a b")
    )
    db.session.commit()
    assert guarded.redirect_url == "https://good.example/a%20b"
    r = post_html(client, guarded.key, {"message": "hi"}, Referer=PAGE)
    assert (r.status_code, r.headers["Location"]) == (303, "https://good.example/a%20b")


def test_a_redirect_saved_before_is_followed_as_a_browser_reads_it(client, app):
    """A redirect saved by an earlier formrelay, as written: sent as a browser reads it."""
    form = make_form(db.session, redirect_url="https://%67ood.example/a b")
    r = post_html(client, form.key, {"message": "hi"})
    assert (r.status_code, r.headers["Location"]) == (303, "https://good.example/a%20b")


# -- Origin and Referer ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "host"),
    [
        ({"Origin": "https://evil.example\\@good.example"}, "evil.example"),
        ({"Referer": "https://evil.example\\@good.example/form"}, "evil.example"),
        ({"Referer": "https:\\\\evil.example/form"}, "evil.example"),
        ({"Origin": "http://2130706434"}, "127.0.0.2"),
        ({"Origin": "https://good.example%2eevil.example"}, "good.example.evil.example"),
    ],
)
def test_a_page_that_a_browser_places_on_another_host_is_refused(client, guarded, headers, host):
    message = f"This form does not accept submissions from {host}."
    assert_refused(
        client, guarded.key, {"message": "hi"}, 403, "ORIGIN_NOT_ALLOWED", message, **headers
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://GOOD.example."},
        {"Origin": "https://xn--bcher-kva.example"},
        {"Referer": "https://bücher.example/kontakt"},
        {"Referer": "https://%67ood.example/contact"},
        {"Origin": "http://0x7f.1:8080"},
    ],
)
def test_a_page_on_an_allowed_host_in_any_spelling_is_accepted(client, guarded, headers):
    assert post_json(client, guarded.key, {"message": "hi"}, **headers).status_code == 200


# -- the log-in next -----------------------------------------------------------------------------
@pytest.fixture
def owner(app):
    made = make_user(db.session)
    db.session.commit()
    return made


@pytest.mark.parametrize("target", LOGIN_OFF_SITE)
def test_next_after_log_in_that_leaves_formrelay_goes_to_the_dashboard(
    client: FlaskClient, auth: AuthActions, owner, target: str
) -> None:
    assert auth.login(next=target).headers["Location"] == "/forms"
    assert client.get("/login", query_string={"next": target}).headers["Location"] == "/forms"


@pytest.mark.parametrize(("target", "location"), LOGIN_LOCAL)
def test_next_after_log_in_is_followed_as_a_browser_reads_the_path(
    client: FlaskClient, auth: AuthActions, owner, target: str, location: str
) -> None:
    assert auth.login(next=target).headers["Location"] == location
