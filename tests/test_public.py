"""POST /f/<key>: what a form, a browser and a Formspree client observe."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from formrelay import create_app
from formrelay.extensions import db
from formrelay.models import Delivery, Submission

from .conftest import BASE_URL
from .factories import make_form

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def form(app):
    # _cc allowed: these tests are about what _cc does (tests/test_spam.py: that it is off
    # unless the owner allows it).
    return make_form(
        db.session, recipients=["owner@example.com", "team@example.com"], allow_cc=True
    )


def stored() -> list[Submission]:
    db.session.rollback()
    return list(db.session.scalars(select(Submission).order_by(Submission.id)))


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def multipart(parts: list[tuple[str, str | tuple[str, bytes, str]]], boundary="XyZ") -> bytes:
    """A multipart/form-data body in exactly this part order."""
    out = b""
    for name, value in parts:
        if isinstance(value, tuple):
            filename, data, ctype = value
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n"
            )
            out += f"--{boundary}\r\n{head}".encode() + data + b"\r\n"
        else:
            out += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            ).encode()
    return out + f"--{boundary}--\r\n".encode()


# -- the three body types ------------------------------------------------------------------
def test_urlencoded_fields_are_stored_in_submitted_order_with_repeated_names(client, form):
    body = "name=Ann&interest=a&email=ann%40example.org&interest=b&message=two%0D%0Alines"
    r = client.post(f"/f/{form.key}", data=body, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 303
    [s] = stored()
    assert s.fields == [
        ["name", "Ann"],
        ["interest", "a"],
        ["email", "ann@example.org"],
        ["interest", "b"],
        ["message", "two\r\nlines"],
    ]
    assert s.reply_to == "ann@example.org"


def test_multipart_fields_are_stored_in_submitted_order(client, form):
    body = multipart([("b", "2"), ("a", "1"), ("b", "3"), ("note", "Zoë 日本")])
    r = client.post(f"/f/{form.key}", data=body, content_type="multipart/form-data; boundary=XyZ")
    assert r.status_code == 303
    assert stored()[0].fields == [["b", "2"], ["a", "1"], ["b", "3"], ["note", "Zoë 日本"]]


def test_json_body_keeps_lists_as_repeated_values(client, form):
    document = {"name": "Ann", "tags": ["x", "y"], "n": 3, "ok": True, "none": None, "o": {"k": 1}}
    # json.dumps keeps key order (Flask's test client would sort the keys).
    r = client.post(f"/f/{form.key}", data=json.dumps(document), content_type=JSON_CT)
    assert r.status_code == 200
    assert stored()[0].fields == [
        ["name", "Ann"],
        ["tags", "x"],
        ["tags", "y"],
        ["n", "3"],
        ["ok", "true"],
        ["none", ""],
        ["o", '{"k": 1}'],
    ]


def test_an_empty_file_input_is_ignored_but_a_file_is_refused(client, form):
    empty = multipart([("message", "hi"), ("attachment", ("", b"", "application/octet-stream"))])
    r = client.post(f"/f/{form.key}", data=empty, content_type="multipart/form-data; boundary=XyZ")
    assert r.status_code == 303
    with_file = multipart([("message", "hi"), ("cv", ("cv.pdf", b"%PDF-1.4", "application/pdf"))])
    r = client.post(
        f"/f/{form.key}",
        data=with_file,
        content_type="multipart/form-data; boundary=XyZ",
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 400
    assert r.json == {
        "ok": False,
        "error": "File uploads are not enabled for this form.",
        "errors": [
            {"code": "NO_FILE_UPLOADS", "message": "File uploads are not enabled for this form."}
        ],
    }
    assert count(Submission) == 1


# -- HTML or JSON: what each client gets ----------------------------------------------------
FORM_CT = "application/x-www-form-urlencoded"
JSON_CT = "application/json"
MULTI_CT = "multipart/form-data; boundary=XyZ"
# The shape each client gets (JSON or HTML) is specified in tests/web/test_negotiation.py.


# -- special fields ------------------------------------------------------------------------
def post_json(client, key, data, **headers):
    return client.post(
        f"/f/{key}",
        data=json.dumps(data),
        content_type=JSON_CT,
        headers={"Accept": "application/json", **headers},
    )


@pytest.mark.parametrize(
    ("fields", "reply_to"),
    [
        ({"_replyto": "Reply@Example.org", "email": "other@example.org"}, "Reply@example.org"),
        ({"email": "ann@example.org"}, "ann@example.org"),
        ({"Email": "ann@example.org"}, "ann@example.org"),
        ({"_replyto": " ", "email": "ann@example.org"}, "ann@example.org"),
        ({"name": "no address"}, None),
        ({"email": ""}, None),
    ],
)
def test_reply_to_comes_from_replyto_else_the_email_field(client, form, fields, reply_to):
    r = post_json(client, form.key, {"message": "hi", **fields})
    assert r.status_code == 200, r.json
    [s] = stored()
    assert s.reply_to == reply_to
    assert "_replyto" not in dict(s.fields)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"_replyto": "not an address"}, "_replyto"),
        ({"_replyto": "a@example.com\r\nBcc: evil@example.com"}, "_replyto"),
        ({"email": "ann@"}, "email"),
        ({"_cc": "ok@example.com, broken"}, "_cc"),
        ({"_cc": "a@x.io,b@x.io,c@x.io,d@x.io,e@x.io,f@x.io"}, "_cc"),
        ({"_next": "javascript:alert(1)"}, "_next"),
        ({"_next": "data:text/html,hi"}, "_next"),
        ({"_next": "ftp://example.com/"}, "_next"),
        ({"_next": "https://ok.example/\r\nSet-Cookie: a=b"}, "_next"),
        ({"_next": "http://[::1"}, "_next"),
        ({"_next": "http://example.org:99999/"}, "_next"),
    ],
)
def test_invalid_special_fields_are_refused_naming_the_field(client, form, fields, field):
    r = post_json(client, form.key, {"message": "hi", **fields}, Referer="https://s.example/")
    assert r.status_code == 400
    assert r.json["ok"] is False
    assert [e["field"] for e in r.json["errors"]] == [field]
    assert r.json["error"] == r.json["errors"][0]["message"]
    assert count(Submission) == 0 and count(Delivery) == 0


def test_every_invalid_field_is_reported_at_once(client, form):
    r = post_json(client, form.key, {"email": "x", "_cc": "y", "_next": "javascript:x"})
    assert r.status_code == 400
    assert [(e["code"], e["field"]) for e in r.json["errors"]] == [
        ("TYPE_EMAIL", "email"),
        ("TYPE_EMAIL", "_cc"),
        ("INVALID_NEXT", "_next"),
    ]


def test_subject_is_one_line_and_capped(client, form):
    r = post_json(
        client, form.key, {"message": "hi", "_subject": "Hi\r\nBcc: x@evil.com " + "z" * 500}
    )
    assert r.status_code == 200
    [s] = stored()
    assert s.subject.startswith("Hi Bcc: x@evil.com zzz")
    assert "\n" not in s.subject and "\r" not in s.subject
    assert len(s.subject) == 200


def test_cc_addresses_ride_on_the_first_delivery_only_so_each_gets_one_copy(client, form):
    r = post_json(client, form.key, {"message": "hi", "_cc": "a@example.com, b@example.com"})
    assert r.status_code == 200
    [s] = stored()
    assert s.cc == ["a@example.com", "b@example.com"]
    assert [(d.target, d.cc) for d in s.deliveries] == [
        ("owner@example.com", ["a@example.com", "b@example.com"]),
        ("team@example.com", []),
    ]


@pytest.mark.parametrize(
    ("next_value", "referrer", "location"),
    [
        ("https://site.example/thanks", None, "https://site.example/thanks"),
        ("http://site.example/t?a=1", None, "http://site.example/t?a=1"),
        ("/thanks.html", "https://site.example/contact/", "https://site.example/thanks.html"),
        (
            "done.html",
            "https://site.example/contact/form",
            "https://site.example/contact/done.html",
        ),
    ],
)
def test_next_redirects_the_browser(client, form, next_value, referrer, location):
    headers = {"Referer": referrer} if referrer else {}
    r = client.post(f"/f/{form.key}", data={"message": "hi", "_next": next_value}, headers=headers)
    assert r.status_code == 303
    assert r.headers["Location"] == location
    assert dict(stored()[0].fields) == {"message": "hi"}


def test_relative_next_without_a_referring_page_is_refused(client, form):
    r = post_json(client, form.key, {"message": "hi", "_next": "/thanks"})
    assert r.status_code == 400
    assert r.json["errors"][0]["field"] == "_next"


def test_the_forms_default_redirect_applies_without_next(client):
    form = make_form(db.session, redirect_url="https://site.example/merci")
    r = client.post(f"/f/{form.key}", data={"message": "hi"})
    assert r.headers["Location"] == "https://site.example/merci"
    r = client.post(f"/f/{form.key}", data={"message": "hi", "_next": "https://o.example/"})
    assert r.headers["Location"] == "https://o.example/"


def test_honeypot_looks_like_success_but_is_stored_as_spam_and_not_delivered(client, form):
    r = post_json(client, form.key, {"message": "buy now", "_gotcha": "http://spam", "email": "x"})
    assert r.status_code == 200
    assert r.json["ok"] is True
    [s] = stored()
    assert s.is_spam and s.spam_reason == "honeypot field was filled"
    assert s.deliveries == []
    assert "_gotcha" not in dict(s.fields)


def test_special_fields_are_not_stored_as_data(client, form):
    r = post_json(
        client,
        form.key,
        {
            "message": "hi",
            "_replyto": "a@example.com",
            "_subject": "S",
            "_next": "https://x.example/",
            "_cc": "c@example.com",
            "_gotcha": "",
            "_other": "kept",
        },
    )
    assert r.status_code == 200
    assert stored()[0].fields == [["message", "hi"], ["_other", "kept"]]


# -- deliveries ----------------------------------------------------------------------------
def test_one_pending_delivery_per_verified_recipient_is_stored_with_the_submission(client, app):
    form = make_form(db.session, recipients=["a@example.com"])
    unverified = make_form(db.session, name="Other", recipients=["b@example.com"], verified=False)
    assert post_json(client, form.key, {"message": "hi"}).status_code == 200
    assert post_json(client, unverified.key, {"message": "hi"}).status_code == 200
    first, second = stored()
    assert [(d.channel, d.target, d.status, d.attempts) for d in first.deliveries] == [
        ("email", "a@example.com", "pending", 0)
    ]
    assert second.deliveries == []


def test_metadata_of_the_request_is_kept(client, form):
    client.post(
        f"/f/{form.key}",
        data={"message": "hi"},
        headers={
            "User-Agent": "Mozilla/5.0 test",
            "Referer": "https://site.example/contact",
            "Origin": "https://site.example",
        },
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    [s] = stored()
    assert (s.remote_addr, s.user_agent, s.referrer, s.origin) == (
        "203.0.113.9",
        "Mozilla/5.0 test",
        "https://site.example/contact",
        "https://site.example",
    )
    assert s.created_at.tzinfo is not None


# -- errors --------------------------------------------------------------------------------
def test_unknown_form_is_404_in_both_shapes(client, app):
    r = post_json(client, "nope", {"message": "hi"})
    assert r.status_code == 404
    assert r.json == {
        "ok": False,
        "error": "There is no form at this address.",
        "errors": [{"code": "FORM_NOT_FOUND", "message": "There is no form at this address."}],
    }
    r = client.post("/f/nope", data={"message": "hi"}, headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 404
    assert "There is no form at this address." in r.text


@pytest.mark.parametrize("path", ["/f/%00", "/f/ab%00cd", "/p/%00/f/key", "/forms/%00"])
def test_a_path_with_a_nul_is_a_404_not_a_database_error(client, app, path):
    # PostgreSQL refuses a NUL in a query's text: such a key must never reach it.
    r = client.post(path, data={"message": "hi"}, headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.json["ok"] is False


def test_disabled_form_is_403_with_a_clear_message(client):
    form = make_form(db.session, enabled=False)
    r = post_json(client, form.key, {"message": "hi"})
    assert r.status_code == 403
    assert r.json["errors"] == [
        {"code": "INACTIVE", "message": "This form has been disabled by its owner."}
    ]
    assert count(Submission) == 0


def test_get_on_the_endpoint_is_405_and_explains_how_to_post(client, form):
    r = client.get(f"/f/{form.key}")
    assert r.status_code == 405
    # Only what is answered otherwise than 405, as OPTIONS and a PUT's 405 say.
    assert r.headers["Allow"] == "OPTIONS, POST"
    assert client.options(f"/f/{form.key}").headers["Allow"] == "OPTIONS, POST"
    assert client.put(f"/f/{form.key}").headers["Allow"] == "OPTIONS, POST"
    assert f'&lt;form action="{BASE_URL}/f/{form.key}" method="POST"&gt;' in r.text


@pytest.mark.parametrize("path", ["/f/no-such-key", "/p/project/f/no-such-key"])
def test_get_on_an_unknown_key_is_404_form_not_found_as_a_post_says(client, path):
    posted = client.post(path, data={"message": "hi"}, headers={"Accept": "application/json"})
    got = client.get(path, headers={"Accept": "application/json"})
    assert (got.status_code, got.json) == (posted.status_code, posted.json)
    assert got.json["errors"] == [
        {"code": "FORM_NOT_FOUND", "message": "There is no form at this address."}
    ]
    page = client.get(path, headers={"Accept": "text/html"})
    assert (page.status_code, page.mimetype) == (404, "text/html")
    assert "There is no form at this address." in page.text
    assert "method=" not in page.text  # no form to paste


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"", FORM_CT, 400, "EMPTY"),
        (b"message=&name=+", FORM_CT, 400, "EMPTY"),
        (b"_subject=only+special", FORM_CT, 400, "EMPTY"),
        (b"{}", JSON_CT, 400, "EMPTY"),
        (b'{"message": "hi"', JSON_CT, 400, "INVALID_JSON"),
        (b'["message"]', JSON_CT, 400, "INVALID_JSON"),
        (b'"text"', JSON_CT, 400, "INVALID_JSON"),
        (b'{"message": "\xff\xfe"}', JSON_CT, 400, "INVALID_ENCODING"),
        (b"message=caf\xe9", FORM_CT, 400, "INVALID_ENCODING"),
        (b"message=caf%E9", FORM_CT, 400, "INVALID_ENCODING"),
        (b"message=a%00b", FORM_CT, 400, "INVALID_ENCODING"),
        (
            multipart([("message", "x")]).replace(b"x\r\n", b"\xe9\r\n"),
            MULTI_CT,
            400,
            "INVALID_ENCODING",
        ),
        (b"--XyZ\r\nbroken", MULTI_CT, 400, "INVALID_MULTIPART"),
        (b"message=hi", "multipart/form-data", 400, "INVALID_MULTIPART"),
        (b"message=hi", "text/plain", 415, "UNSUPPORTED_CONTENT_TYPE"),
        (b"<x/>", "application/xml", 415, "UNSUPPORTED_CONTENT_TYPE"),
        (b"message=" + b"a" * (100 * 1024), FORM_CT, 413, "PAYLOAD_TOO_LARGE"),
        (b"&".join(b"f%d=1" % i for i in range(201)), FORM_CT, 400, "TOO_MANY_FIELDS"),
    ],
)
def test_bad_bodies_are_refused_with_a_clear_error(client, form, body, content_type, status, code):
    r = client.post(
        f"/f/{form.key}",
        data=body,
        content_type=content_type,
        headers={"Accept": "application/json"},
    )
    assert r.status_code == status
    assert r.json["ok"] is False
    assert r.json["errors"][0]["code"] == code
    assert r.json["error"]
    assert count(Submission) == 0


def test_200_fields_are_accepted(client, form):
    body = b"&".join(b"f%d=1" % i for i in range(200))
    assert client.post(f"/f/{form.key}", data=body, content_type=FORM_CT).status_code == 303


def test_body_limit_and_field_limit_are_configurable(app_config):
    app_config.update(max_body_bytes=50, max_fields=2)
    app = create_app(app_config)
    with app.app_context():
        form = make_form(db.session)
        client = app.test_client()
        big = client.post(f"/f/{form.key}", data={"message": "x" * 60})
        assert big.status_code == 413
        many = client.post(f"/f/{form.key}", data={"a": "1", "b": "2", "c": "3"})
        assert many.status_code == 400
        assert client.post(f"/f/{form.key}", data={"a": "1", "b": "2"}).status_code == 303
        db.session.remove()
        db.engine.dispose()


def test_a_chunked_body_over_the_limit_is_refused(client, form):
    # No Content-Length: the limit holds while reading, as under gunicorn's chunked input.
    r = client.post(
        f"/f/{form.key}",
        input_stream=io.BytesIO(b"message=" + b"a" * (200 * 1024)),
        content_type=FORM_CT,
        headers={"Accept": "application/json", "Transfer-Encoding": "chunked"},
        environ_base={"wsgi.input_terminated": True},
    )
    assert r.status_code == 413
    assert r.json["errors"][0]["code"] == "PAYLOAD_TOO_LARGE"


def test_database_unavailable_is_503_and_never_a_2xx(app_config):
    app_config["database_url"] = "postgresql://postgres@127.0.0.1:9/none?connect_timeout=2"
    app = create_app(app_config)
    client = app.test_client()
    r = client.post("/f/anything", json={"message": "hi"})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "30"
    assert r.json["ok"] is False
    assert "try again" in r.json["error"]


# -- CORS ----------------------------------------------------------------------------------
def test_cors_preflight_allows_formspree_client_headers(client, form):
    r = client.options(
        f"/f/{form.key}",
        headers={
            "Origin": "https://site.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, accept, formspree-client, "
            "formspree-session-data, x-requested-with",
        },
    )
    assert r.status_code in (200, 204)
    assert r.headers["Access-Control-Allow-Origin"] in ("*", "https://site.example")
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= {
        "content-type",
        "accept",
        "formspree-client",
        "formspree-session-data",
        "x-requested-with",
    }
    assert "Access-Control-Allow-Credentials" not in r.headers


def test_cross_origin_post_and_its_errors_carry_cors_headers(client, form):
    ok = post_json(client, form.key, {"message": "hi"}, Origin="https://site.example")
    bad = post_json(client, "missing", {"message": "hi"}, Origin="https://site.example")
    for r in (ok, bad):
        assert r.headers["Access-Control-Allow-Origin"] in ("*", "https://site.example")


def test_cors_is_only_on_the_public_endpoint(client, app):
    r = client.get("/", headers={"Origin": "https://site.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_project_scoped_path_of_formspree_clients_works(client, form):
    r = client.post(
        f"/p/proj123/f/{form.key}", json={"message": "hi"}, headers={"Accept": "application/json"}
    )
    assert r.status_code == 200
    assert r.json["ok"] is True


# -- formrelay's own pages -----------------------------------------------------------------
def test_a_malformed_referrer_is_ignored_not_an_error(client, form):
    headers = {"Referer": "http://[::1", "Accept": BROWSER_ACCEPT}
    ok = client.post(f"/f/{form.key}", data={"message": "hi"}, headers=headers)
    assert ok.status_code == 303
    assert ok.headers["Location"] == f"{BASE_URL}/thanks"
    bad = client.post(f"/f/{form.key}", data={"email": "x"}, headers=headers)
    assert bad.status_code == 400
    assert client.get("/thanks?back=http://[::1").status_code == 200


def test_thanks_page_links_back_to_an_http_referrer_only(client, app):
    r = client.get("/thanks?back=https://site.example/contact")
    assert r.status_code == 200
    assert 'href="https://site.example/contact"' in r.text
    r = client.get("/thanks?back=javascript:alert(1)")
    assert "javascript:alert(1)" not in r.text


def test_unknown_page_is_404_html_or_json(client, app):
    assert client.get("/nowhere").status_code == 404
    r = client.get("/nowhere", headers={"Accept": "application/json"})
    assert r.json["errors"][0]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    [{"email": "nope"}, {}, {"message": "hi", "_next": "javascript:x"}],
)
def test_an_unknown_form_is_reported_before_invalid_fields(client, app, body):
    r = post_json(client, "no-such-form", body)
    assert r.status_code == 404
    assert r.json["errors"][0]["code"] == "FORM_NOT_FOUND"


def test_a_disabled_form_is_reported_before_invalid_fields(client):
    form = make_form(db.session, enabled=False)
    r = post_json(client, form.key, {"email": "nope"})
    assert r.status_code == 403
    assert r.json["errors"][0]["code"] == "INACTIVE"


def test_the_error_page_goes_back_to_the_form_keeping_what_was_typed(client, form):
    r = client.post(
        f"/f/{form.key}",
        data={"email": "nope"},
        headers={"Accept": BROWSER_ACCEPT, "Referer": "https://site.example/"},
    )
    assert r.status_code == 400
    assert 'href="https://site.example/" data-history-back>' in r.text


# -- text that cannot be stored ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "accept"),
    [
        ('{"_subject": "S\\udfff", "message": "x"}', "application/json"),
        ('{"message": "x\\ud800y"}', "application/json"),
        ('{"na\\udc00me": "x"}', "application/json"),
        ('{"message": ["ok", "\\ud83d"]}', "application/json"),
        ('{"message": {"nested": "\\udfff"}}', "application/json"),
        ('{"message": "hi", "_next": "https://site.example/\\udfff"}', BROWSER_ACCEPT),
        ('{"message": "hi", "_replyto": "a\\ud800@example.org"}', "application/json"),
    ],
    ids=["_subject", "value", "name", "list value", "nested value", "_next", "_replyto"],
)
def test_a_lone_surrogate_anywhere_is_refused_and_nothing_is_stored(client, form, body, accept):
    r = client.post(f"/f/{form.key}", data=body, content_type=JSON_CT, headers={"Accept": accept})

    assert r.status_code == 400
    if accept == "application/json":
        assert r.json["errors"][0]["code"] == "INVALID_ENCODING"
        assert "surrogate" in r.json["error"]
    else:
        assert "surrogate" in r.text
    assert count(Submission) == 0 and count(Delivery) == 0


def test_a_surrogate_pair_is_one_character_and_is_accepted(client, form):
    r = client.post(
        f"/f/{form.key}",
        data='{"message": "smile \\ud83d\\ude00"}',
        content_type=JSON_CT,
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200
    assert stored()[0].fields == [["message", "smile \U0001f600"]]


def test_bad_submissions_posted_among_good_ones_never_fail_them(app, form):
    """90 valid posts and 10 with a lone surrogate, concurrently, against a real server:
    every valid one is answered 2xx and stored; each bad one gets its own 400."""
    import threading

    import httpx
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.port}/f/{form.key}"
    bodies = [
        f'{{"message": "bad \\udfff {n}"}}' if n % 10 == 0 else f'{{"message": "good {n}"}}'
        for n in range(100)
    ]
    answers: dict[int, int] = {}

    def post(n: int) -> None:
        r = httpx.post(url, content=bodies[n], headers={"Content-Type": JSON_CT, "Accept": JSON_CT})
        answers[n] = r.status_code

    try:
        threads = [threading.Thread(target=post, args=(n,)) for n in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        server.shutdown()
        thread.join(10)

    assert {n: s for n, s in answers.items() if n % 10} == {n: 200 for n in range(100) if n % 10}
    assert {n: s for n, s in answers.items() if not n % 10} == {n: 400 for n in range(0, 100, 10)}
    messages = sorted(s.fields[0][1] for s in stored())
    assert messages == sorted(f"good {n}" for n in range(100) if n % 10)
    assert count(Delivery) == 2 * 90


# -- repeated and hidden special fields ----------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("_replyto", False),
        ("_subject", False),
        ("_next", False),
        ("_cc", False),
        ("_gotcha", False),
        ("_language", False),
        ("_template", False),
        ("_format", False),
        ("_foo", True),
        ("_source", True),
        ("__", True),
    ],
)
def test_formspree_special_names_are_not_data_but_other_underscored_names_are(
    client, form, name, shown
):
    values = {
        "_replyto": "a@example.com",
        "_next": "https://x.example/",
        "_cc": "c@example.com",
        "_gotcha": "",
    }
    r = post_json(client, form.key, {"message": "hi", name: values.get(name, "de")})
    assert r.status_code == 200, r.json
    expected = [["message", "hi"]] + ([[name, values.get(name, "de")]] if shown else [])
    assert stored()[0].fields == expected


def test_cc_addresses_are_merged_from_every_value_and_kept_once(client, form):
    body = [
        ("message", "hi"),
        ("_cc", "A@example.com, b@example.com"),
        ("_cc", "a@example.com"),
        ("_cc", "B@Example.com, owner@example.com"),
        ("_cc", "TEAM@example.com"),
    ]
    r = client.post(f"/f/{form.key}", data=MultiDict(body), headers={"Accept": "application/json"})
    assert r.status_code == 200, r.json
    [s] = stored()
    assert s.cc == ["A@example.com", "b@example.com", "owner@example.com", "TEAM@example.com"]
    # The form's own recipients (owner@, team@) are not copied again.
    assert [(d.target, d.cc) for d in s.deliveries] == [
        ("owner@example.com", ["A@example.com", "b@example.com"]),
        ("team@example.com", []),
    ]


def test_a_json_list_of_cc_is_merged_and_capped_in_all(client, form):
    ok = post_json(client, form.key, {"message": "hi", "_cc": ["a@x.io", "b@x.io, c@x.io"]})
    assert ok.status_code == 200
    assert stored()[0].cc == ["a@x.io", "b@x.io", "c@x.io"]
    many = post_json(
        client, form.key, {"message": "hi", "_cc": ["a@x.io,b@x.io,c@x.io", "d@x.io,e@x.io,f@x.io"]}
    )
    assert many.status_code == 400
    assert many.json["errors"] == [
        {
            "code": "TOO_MANY_CC",
            "field": "_cc",
            "message": "The _cc field lists more than 5 addresses.",
        }
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ([("email", "ann@example.org"), ("email", "not an address")], "email"),
        ([("Email", "ann@example.org"), ("EMAIL", "x@")], "email"),
        ([("_replyto", "ann@example.org"), ("_replyto", "nope")], "_replyto"),
        ([("_cc", "a@example.org"), ("_cc", "nope")], "_cc"),
        ([("_next", "https://ok.example/"), ("_next", "javascript:x")], "_next"),
    ],
)
def test_every_value_of_a_repeated_special_field_is_validated(client, form, fields, field):
    r = client.post(
        f"/f/{form.key}",
        data=MultiDict([("message", "hi"), *fields]),
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 400
    assert [e["field"] for e in r.json["errors"]] == [field]
    assert count(Submission) == 0


def test_the_first_non_blank_value_of_a_repeated_special_field_is_used(client, form):
    body = [
        ("message", "hi"),
        ("_subject", " "),
        ("_subject", "First"),
        ("_subject", "Second"),
        ("_next", "https://one.example/"),
        ("_next", "https://two.example/"),
        ("email", "ann@example.org"),
        ("email", "bob@example.org"),
    ]
    r = client.post(f"/f/{form.key}", data=MultiDict(body))
    assert r.headers["Location"] == "https://one.example/"
    [s] = stored()
    assert (s.subject, s.reply_to) == ("First", "ann@example.org")


# -- addresses -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("replyto", "stored_as"),
    [
        ("Bob <bob@example.net>", "Bob <bob@example.net>"),
        ('"Smith, Bob" <bob@example.net>', '"Smith, Bob" <bob@example.net>'),
        ("Zoë Café <zoe@example.net>", "Zoë Café <zoe@example.net>"),
        ("Evil\x1b[31m <bob@example.net>", '"Evil [31m" <bob@example.net>'),
        ("<bob@example.net>", "bob@example.net"),
        ("ann@bücher.de", "ann@bücher.de"),
    ],
)
def test_replyto_may_carry_a_display_name(client, form, replyto, stored_as):
    r = post_json(client, form.key, {"message": "hi", "_replyto": replyto})
    assert r.status_code == 200, r.json
    assert stored()[0].reply_to == stored_as


@pytest.mark.parametrize("field", ["_replyto", "email", "_cc"])
def test_a_non_ascii_local_part_is_refused_saying_why(client, form, field):
    r = post_json(client, form.key, {"message": "hi", field: "zoë@example.org"})
    assert r.status_code == 400
    assert r.json["errors"] == [
        {
            "code": "TYPE_EMAIL",
            "field": field,
            "message": f"The {field} field must be an e-mail address whose part before the @ "
            "is ASCII (non-ASCII local parts are not supported).",
        }
    ]
    assert count(Submission) == 0


@pytest.mark.parametrize(
    "subject",
    ["Hi\x1b[2J there", "Hi\x7f there", "Hi\x9b there", "Hi\u2028there", "Hi\x00there"],
    ids=["ESC", "DEL", "C1", "LINE SEPARATOR", "NUL in JSON"],
)
def test_control_characters_never_reach_the_subject(client, form, subject):
    r = post_json(client, form.key, {"message": "hi", "_subject": subject})
    if "\x00" in subject:
        assert r.status_code == 400  # NUL: refused outright, as everywhere
        return
    assert r.status_code == 200
    assert stored()[0].subject in ("Hi [2J there", "Hi there")
