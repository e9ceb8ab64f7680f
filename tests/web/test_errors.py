"""Error responses: their status, headers and body in both shapes (JSON and an HTML page)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import abort
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import (
    RequestEntityTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)

from formrelay import create_app
from formrelay.extensions import db

from ..factories import make_form

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON_CLIENT = "application/json"
ALLOW = "OPTIONS, POST"  # GET and HEAD answer 405 too: not allowed


@pytest.fixture
def form(app):
    return make_form(db.session)


def assert_json_error(r, status: int, code: str, message: str) -> None:
    assert (r.status_code, r.mimetype) == (status, "application/json")
    assert r.json == {"ok": False, "error": message, "errors": [{"code": code, "message": message}]}


def assert_html_error(r, status: int, heading: str, message: str) -> None:
    assert (r.status_code, r.mimetype) == (status, "text/html")
    assert f"<title>{status}: {heading}</title>" in r.text
    assert f"<h1>{heading}</h1>" in r.text
    assert f'<p class="error">{message}</p>' in r.text


# -- 405 and OPTIONS: one Allow for a form's address ---------------------------------------
@pytest.mark.parametrize("path", ["/f/{key}", "/p/proj123/f/{key}"])
@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
def test_a_method_the_endpoint_does_not_answer_is_405_with_allow(client, form, path, method):
    url = path.format(key=form.key)
    r = client.open(url, method=method, headers={"Accept": JSON_CLIENT})
    assert r.headers["Allow"] == ALLOW
    assert_json_error(r, 405, "METHOD_NOT_ALLOWED", f"{method} is not allowed here.")
    r = client.open(url, method=method, headers={"Accept": BROWSER})
    assert r.headers["Allow"] == ALLOW
    assert_html_error(r, 405, "Method Not Allowed", f"{method} is not allowed here.")


@pytest.mark.parametrize("path", ["/f/{key}", "/p/proj123/f/{key}"])
def test_options_get_and_other_methods_list_the_same_allow(client, form, path):
    url = path.format(key=form.key)
    options = client.options(url)
    assert (options.status_code, options.headers["Allow"]) == (200, ALLOW)
    for method in ("GET", "HEAD", "DELETE"):
        assert client.open(url, method=method).headers["Allow"] == ALLOW
    assert client.post(url, data={"message": "hi"}).status_code == 303


def test_a_cors_preflight_still_gets_flask_cors_answer(client, form):
    r = client.options(
        f"/f/{form.key}",
        headers={"Origin": "https://site.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://site.example"
    assert r.headers["Access-Control-Allow-Methods"] == "POST"
    assert r.headers["Access-Control-Max-Age"] == "86400"
    assert r.headers["Allow"] == ALLOW


def test_options_without_preflight_headers_is_no_cors_preflight(client, form):
    r = client.options(f"/f/{form.key}")
    assert "Access-Control-Allow-Methods" not in r.headers


# -- 413 -----------------------------------------------------------------------------------
def test_a_submission_over_the_body_limit_is_413_in_both_shapes(client, form):
    big = {"message": "a" * (100 * 1024)}
    message = "The submission is larger than the 100 KB accepted."
    r = client.post(f"/f/{form.key}", data=big, headers={"Accept": JSON_CLIENT})
    assert_json_error(r, 413, "PAYLOAD_TOO_LARGE", message)
    r = client.post(f"/f/{form.key}", data=big, headers={"Accept": BROWSER})
    assert_html_error(r, 413, "The form could not be sent", message)


# -- werkzeug's HTTP errors, raised by a view, keep every header they carry ----------------
def _raise(exc: Exception) -> None:
    raise exc


RAISED = {
    "too-large": lambda: _raise(RequestEntityTooLarge()),
    "too-many": lambda: _raise(TooManyRequests(retry_after=120)),
    "too-many-until": lambda: _raise(
        TooManyRequests(retry_after=datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    ),
    "aborted-429": lambda: abort(429, retry_after=60),
    "unavailable": lambda: _raise(ServiceUnavailable(retry_after=45)),
    "unauthorized": lambda: _raise(
        Unauthorized(www_authenticate=WWWAuthenticate("basic", {"realm": "formrelay"}))
    ),
}


@pytest.fixture
def raising_app(app):
    """The test app with /raise/<name>, whose view raises RAISED[name] (test-only routes)."""
    app.add_url_rule("/raise/<name>", view_func=lambda name: RAISED[name]())
    return app


@pytest.mark.parametrize(
    ("name", "status", "code", "headers"),
    [
        ("too-large", 413, "PAYLOAD_TOO_LARGE", {}),
        ("too-many", 429, "TOO_MANY_REQUESTS", {"Retry-After": "120"}),
        (
            "too-many-until",
            429,
            "TOO_MANY_REQUESTS",
            {"Retry-After": "Tue, 01 Jan 2030 12:00:00 GMT"},
        ),
        ("aborted-429", 429, "TOO_MANY_REQUESTS", {"Retry-After": "60"}),
        ("unavailable", 503, "SERVICE_UNAVAILABLE", {"Retry-After": "45"}),
        ("unauthorized", 401, "ERROR", {"WWW-Authenticate": "Basic realm=formrelay"}),
    ],
)
@pytest.mark.parametrize("accept", [JSON_CLIENT, BROWSER])
def test_http_errors_keep_their_headers_in_both_shapes(
    raising_app, name, status, code, headers, accept
):
    r = raising_app.test_client().get(f"/raise/{name}", headers={"Accept": accept})
    assert r.status_code == status
    assert {k: r.headers.get(k) for k in headers} == headers
    # Our body's type, not the text/html werkzeug's exception announces.
    assert r.headers.getlist("Content-Type") == [
        "application/json" if accept == JSON_CLIENT else "text/html; charset=utf-8"
    ]
    if accept == JSON_CLIENT:
        assert [e["code"] for e in r.json["errors"]] == [code]


# -- 503: the database is down --------------------------------------------------------------
@pytest.mark.parametrize("accept", [JSON_CLIENT, BROWSER])
def test_database_unavailable_is_503_with_retry_after_in_both_shapes(app_config, accept):
    app_config["database_url"] = "postgresql://postgres@127.0.0.1:9/none?connect_timeout=2"
    app = create_app(app_config)
    r = app.test_client().post("/f/anything", data={"message": "hi"}, headers={"Accept": accept})
    message = "The service cannot store submissions right now; please try again shortly."
    assert r.headers["Retry-After"] == "30"
    if accept == JSON_CLIENT:
        assert_json_error(r, 503, "SERVICE_UNAVAILABLE", message)
    else:
        assert_html_error(r, 503, "Something went wrong", message)


# -- 404: what was not found ----------------------------------------------------------------
def test_an_unknown_form_says_there_is_no_form_in_both_shapes(client, app):
    message = "There is no form at this address."
    r = client.post("/f/nope", data={"message": "hi"}, headers={"Accept": JSON_CLIENT})
    assert_json_error(r, 404, "FORM_NOT_FOUND", message)
    r = client.post("/f/nope", data={"message": "hi"}, headers={"Accept": BROWSER})
    assert_html_error(r, 404, "Not found", message)
    assert "could not be sent" not in r.text


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unknown_page_says_there_is_nothing_in_both_shapes(client, app, method):
    message = "There is nothing at this address."
    r = client.open("/nowhere", method=method, headers={"Accept": JSON_CLIENT})
    assert_json_error(r, 404, "NOT_FOUND", message)
    r = client.open("/nowhere", method=method, headers={"Accept": BROWSER})
    assert_html_error(r, 404, "Not found", message)
    assert "could not be sent" not in r.text and "no form" not in r.text
