"""JSON or an HTML page (a redirect, on success): what each real client gets from POST /f/<key>."""

from __future__ import annotations

import json

import pytest

from formrelay.extensions import db

from ..conftest import BASE_URL
from ..factories import make_form
from ..test_public import multipart, stored

# Navigation (and form post) Accept headers, as the browsers send them today.
CHROME = (  # Chrome, Edge, Opera and other Chromium browsers
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # 128 and later
FIREFOX_92_TO_127 = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)
SAFARI = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
AXIOS = "application/json, text/plain, */*"
JQUERY_JSON = "application/json, text/javascript, */*; q=0.01"  # $.ajax({dataType: "json"})
HTML_FIRST = "text/html;q=0.9, application/json;q=0.8"
JSON_FIRST = "application/json;q=0.9, text/html;q=0.8"

FORM, MULTI, JSON_BODY = "form", "multipart", "json"
HTML, JSON = "html", "json"

CLIENTS = [
    # (Accept, X-Requested-With, body, shape)
    pytest.param(CHROME, None, FORM, HTML, id="chrome-form"),
    pytest.param(CHROME, None, MULTI, HTML, id="chrome-multipart-form"),
    pytest.param(FIREFOX, None, FORM, HTML, id="firefox-form"),
    pytest.param(FIREFOX, None, MULTI, HTML, id="firefox-multipart-form"),
    pytest.param(FIREFOX_92_TO_127, None, FORM, HTML, id="firefox-92-to-127-form"),
    pytest.param(SAFARI, None, FORM, HTML, id="safari-form"),
    pytest.param(SAFARI, None, MULTI, HTML, id="safari-multipart-form"),
    # fetch() without an Accept of its own sends */*: the body decides.
    pytest.param("*/*", None, FORM, HTML, id="fetch-default-urlencoded"),
    pytest.param("*/*", None, MULTI, HTML, id="fetch-default-formdata"),
    pytest.param("*/*", None, JSON_BODY, JSON, id="fetch-default-json"),
    pytest.param("*/*", None, FORM, HTML, id="curl-d"),
    pytest.param("application/json", None, JSON_BODY, JSON, id="curl-json"),  # curl --json
    pytest.param("application/json", None, FORM, JSON, id="fetch-accept-json-urlencoded"),
    pytest.param(AXIOS, None, JSON_BODY, JSON, id="axios-object"),
    pytest.param(AXIOS, None, FORM, JSON, id="axios-urlsearchparams"),
    pytest.param(AXIOS, None, MULTI, JSON, id="axios-formdata"),
    pytest.param(JQUERY_JSON, None, FORM, JSON, id="jquery-datatype-json-cross-origin"),
    pytest.param(JQUERY_JSON, "XMLHttpRequest", FORM, JSON, id="jquery-datatype-json"),
    # $.ajax's default Accept is */*; only a same-origin call adds X-Requested-With.
    pytest.param("*/*", "XMLHttpRequest", FORM, JSON, id="jquery-default-same-origin"),
    pytest.param("*/*", None, FORM, HTML, id="jquery-default-cross-origin"),
    pytest.param(SAFARI, "XMLHttpRequest", FORM, JSON, id="xhr-header-beats-accept"),
    pytest.param("*/*", None, FORM, HTML, id="requests-data"),
    pytest.param("*/*", None, JSON_BODY, JSON, id="requests-json"),
    pytest.param("*/*", None, FORM, HTML, id="httpx-data"),
    pytest.param("*/*", None, JSON_BODY, JSON, id="httpx-json"),
    # @formspree/core (and @formspree/ajax and @formspree/react, which use it).
    pytest.param("application/json", None, JSON_BODY, JSON, id="formspree-core-object"),
    pytest.param("application/json", None, MULTI, JSON, id="formspree-core-formdata"),
    pytest.param(None, None, FORM, HTML, id="no-accept-form"),
    pytest.param(None, None, JSON_BODY, JSON, id="no-accept-json"),
    pytest.param(None, "XMLHttpRequest", FORM, JSON, id="no-accept-xhr"),
    # Qualities decide before anything else.
    pytest.param(HTML_FIRST, None, FORM, HTML, id="html-q-higher-form"),
    pytest.param(HTML_FIRST, None, JSON_BODY, HTML, id="html-q-higher-json"),
    pytest.param(JSON_FIRST, None, FORM, JSON, id="json-q-higher-form"),
    pytest.param(JSON_FIRST, None, JSON_BODY, JSON, id="json-q-higher-json"),
    pytest.param("text/html;q=0.5, application/json", None, FORM, JSON, id="json-default-q"),
    pytest.param("application/json;q=0.5, text/html", None, JSON_BODY, HTML, id="html-default-q"),
    pytest.param("text/html", None, JSON_BODY, HTML, id="only-html-json-body"),
    pytest.param(FIREFOX, None, JSON_BODY, HTML, id="browser-accept-json-body"),
    # The most specific range sets a type's quality: q=0 refuses it despite */*.
    pytest.param("application/json;q=0, */*", None, JSON_BODY, HTML, id="json-refused"),
    pytest.param("text/html;q=0, */*", None, FORM, JSON, id="html-refused"),
    # At equal quality, a named type beats type/*, which beats */*.
    pytest.param("application/*", None, FORM, JSON, id="application-wildcard"),
    pytest.param("text/*", None, JSON_BODY, HTML, id="text-wildcard"),
    pytest.param("application/json, text/*", None, FORM, JSON, id="named-json-beats-text-star"),
    pytest.param("text/html, application/*", None, JSON_BODY, HTML, id="named-html-beats-app-star"),
    pytest.param("application/*, */*", None, FORM, JSON, id="app-star-beats-any"),
    pytest.param("application/json; charset=utf-8", None, FORM, JSON, id="json-with-charset"),
    # A tie the header cannot break: the body decides.
    pytest.param("text/html, application/json", None, FORM, HTML, id="both-named-form"),
    pytest.param("text/html, application/json", None, JSON_BODY, JSON, id="both-named-json"),
    pytest.param("text/*, application/*", None, FORM, HTML, id="both-wildcards-form"),
    pytest.param("text/plain", None, FORM, HTML, id="neither-form"),
    pytest.param("text/plain", None, JSON_BODY, JSON, id="neither-json"),
]


@pytest.fixture
def form(app):
    return make_form(db.session)


def body_of(kind: str, fields: dict[str, str]) -> tuple[bytes, str]:
    """A request body of `kind` and its Content-Type."""
    if kind == JSON_BODY:
        return json.dumps(fields).encode(), "application/json"
    if kind == MULTI:
        return multipart(list(fields.items())), "multipart/form-data; boundary=XyZ"
    return "&".join(f"{k}={v}" for k, v in fields.items()).encode(), (
        "application/x-www-form-urlencoded"
    )


def post(client, key: str, body: str, fields: dict[str, str], accept, xhr):
    headers = {"Referer": "https://site.example/contact"}
    if accept is not None:
        headers["Accept"] = accept
    if xhr is not None:
        headers["X-Requested-With"] = xhr
    data, content_type = body_of(body, fields)
    return client.post(f"/f/{key}", data=data, content_type=content_type, headers=headers)


@pytest.mark.parametrize(("accept", "xhr", "body", "shape"), CLIENTS)
def test_each_client_gets_the_shape_it_expects(client, form, accept, xhr, body, shape):
    r = post(client, form.key, body, {"message": "hi"}, accept, xhr)
    thanks = f"{BASE_URL}/thanks?back=https%3A%2F%2Fsite.example%2Fcontact"
    if shape == JSON:
        assert (r.status_code, r.mimetype) == (200, "application/json")
        assert r.json == {"ok": True, "next": thanks, "id": stored()[0].id}
    else:
        assert r.status_code == 303
        assert r.headers["Location"] == thanks


@pytest.mark.parametrize(("accept", "xhr", "body", "shape"), CLIENTS)
def test_each_client_gets_its_errors_in_the_same_shape(client, form, accept, xhr, body, shape):
    r = post(client, form.key, body, {"email": "not-an-address"}, accept, xhr)
    message = "The email field must be a valid e-mail address."
    assert r.status_code == 400
    if shape == JSON:
        assert r.mimetype == "application/json"
        assert r.json == {
            "ok": False,
            "error": message,
            "errors": [{"code": "TYPE_EMAIL", "field": "email", "message": message}],
        }
    else:
        assert r.mimetype == "text/html"
        assert "<h1>The form could not be sent</h1>" in r.text
        assert message in r.text
        assert 'href="https://site.example/contact"' in r.text
    assert stored() == []


@pytest.mark.parametrize(
    ("accept", "body", "shape"),
    [
        ("", FORM, HTML),
        (",", JSON_BODY, JSON),
        (";;;", FORM, HTML),
        ("text/html;q=abc", JSON_BODY, JSON),  # a bad q drops its range
        ("text/html;q=2, application/json", FORM, JSON),
        ('application/json;q="0.5"', FORM, JSON),
        ("application/json;q=0.5;q=0.9", FORM, JSON),
        ("application/json;;q=0.5, text/html", JSON_BODY, HTML),
        ("*/json", FORM, HTML),
        ("*/html", JSON_BODY, JSON),
        ("application", FORM, HTML),
        ("a/b/c", JSON_BODY, JSON),
        ("/", FORM, HTML),
        ("=;,/;q=1", JSON_BODY, JSON),
        ('"', FORM, HTML),
        ("*/*;q=", JSON_BODY, JSON),
        ("t\u00ebxt/html", FORM, HTML),
        ("application/json, " * 2000, FORM, JSON),
    ],
)
def test_a_malformed_accept_header_is_read_as_far_as_it_makes_sense(
    client, form, accept, body, shape
):
    r = post(client, form.key, body, {"message": "hi"}, accept, None)
    assert r.status_code == (200 if shape == JSON else 303)
    bad = post(client, form.key, body, {"email": "x"}, accept, None)
    assert (bad.status_code, bad.mimetype) == (
        400,
        "application/json" if shape == JSON else "text/html",
    )


@pytest.mark.parametrize(
    ("accept", "mimetype"),
    [
        (CHROME, "text/html"),
        ("*/*", "text/html"),  # curl, fetch: no body to say otherwise
        (None, "text/html"),
        (AXIOS, "application/json"),
        ("application/json", "application/json"),
    ],
)
def test_errors_of_other_addresses_follow_the_same_rule(client, app, accept, mimetype):
    r = client.get("/nowhere", headers={"Accept": accept} if accept else {})
    assert (r.status_code, r.mimetype) == (404, mimetype)
