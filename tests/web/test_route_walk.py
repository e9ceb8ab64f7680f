"""Every route in the URL map, walked with out-of-range and wrong-typed values: no 500.

Each rule is requested with every method (those it allows and those it does not), signed in
as an admin who owns one of each object and signed out, with each of its path arguments in
turn replaced by a value no row can have (ids past SQLite's 64-bit integers, 0, -1, words,
unicode, very long, NUL), with bad values for every query parameter the views read, and,
for POST, with bodies that give every field of the dashboard's inputs a bad value. CSRF is
off in this test's app, so that the bodies reach the views. Nothing may answer 500 (or a
503, which would blame a database that is up); an id that names nothing is 404, a bad
filter 400, and a 405's Allow lists only methods that are answered otherwise.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_wtf import FlaskForm
from werkzeug.routing import IntegerConverter, Rule

from formrelay.extensions import db
from formrelay.models import DeliveryStatus
from formrelay.services import suppressions
from formrelay.web import inputs

from ..auth import AuthActions
from ..factories import make_delivery, make_form, make_submission, make_user

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# Path values no row has (past SQLite's 64-bit and PostgreSQL's 32-bit integers), or that
# are not ids at all. "%00" and the long ones are sent as
# they are written (quoted where needed).
HUGE = "1" + "0" * 22
BAD_IDS = (
    HUGE,
    str(2**63),
    "99999999999999999999",
    "9999999999",
    str(2**31),
    "0",
    "-1",
    "1.5",
    "abc",
    "٣",
    "9" * 5000,
)
BAD_WORDS = ("no-such-key", "ünïcødé-✓", "x" * 2000, "%00", HUGE, "..", "a%2Fb")

# Filters and other query parameters the views read, with values past what they accept.
BAD_TIMES = (
    "9999-12-31",
    "0001-01-01",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999",
    "10000-01-01",
    "2024-02-30",
    "yesterday",
    "\x00",
)


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSORS = (
    _cursor("0001-01-01T00:00:00+14:00|1"),
    _cursor("9999-12-31T23:59:59-14:00|1"),
    _cursor(f"2024-01-01T00:00:00+00:00|{HUGE}"),
    _cursor("2024-01-01T00:00:00+00:00|-1"),
    _cursor("2024-01-01T00:00:00|1"),
    "!!!",
    "x" * 3000,
)
BAD_GENERAL = ("", HUGE, "-1", "ünï", "x" * 3000, "\x00", "[]", "https://evil.example/")
QUERY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "since": BAD_TIMES,
    "until": BAD_TIMES,
    "older": BAD_CURSORS,
    "newer": BAD_CURSORS,
    "folder": BAD_GENERAL,
    "delivery": BAD_GENERAL,
    "q": ('"', "AND OR NOT", "*", "(", "x" * 3000, "\x00", "NEAR(a b, -1)"),
    "next": (*BAD_GENERAL, "//evil.example", "/\\evil.example"),
    "back": BAD_GENERAL,
    "page": BAD_GENERAL,
    "per_page": BAD_GENERAL,
    "sort": BAD_GENERAL,
}
# The filters of the submissions lists and exports: a bad value is a 400 there.
FILTERED_ENDPOINTS = {
    "submissions.form",
    "submissions.all",
    "exports.form_export",
    "exports.all_export",
}
FILTER_PARAMETERS = ("since", "until", "older", "newer", "folder", "delivery")
# Times Python reads that a filter still cannot use: the day after 9999-12-31, and times
# past the ends of Python's range once in UTC (tested as 400 below).
OUT_OF_RANGE_FILTERS = (
    ("until", "9999-12-31"),
    ("since", "0001-01-01T00:00:00+14:00"),
    ("until", "9999-12-31T23:59:59-14:00"),
)


def _input_fields() -> list[str]:
    """Every field name of the dashboard's WTForms inputs."""
    names: set[str] = set()
    for value in vars(inputs).values():
        if (
            isinstance(value, type)
            and issubclass(value, FlaskForm)
            and value.__module__ == inputs.__name__
        ):
            names.update(n for n, v in vars(value).items() if hasattr(v, "field_class"))
    return sorted(names)


BAD_FIELD_VALUES = (HUGE, str(2**63), "-1", "1e400", "nan", "ünï", "x" * 5000, "\x00", "")


def _bad_bodies() -> Iterator[dict[str, object]]:
    fields = [*_input_fields(), "id", "back", "confirmed", "next"]
    for value in BAD_FIELD_VALUES:
        yield {name: value for name in fields}
    yield {"id": [HUGE, "1"], "confirmed": "1"}
    yield {"id": [str(2**63)]}


# SNS message bodies for /hooks/ses: every field of the wrong type, and JSON nested past
# Python's recursion limit (well under the body's size cap).
SNS_FIELDS = (
    "Type",
    "TopicArn",
    "Timestamp",
    "MessageId",
    "Message",
    "Signature",
    "SignatureVersion",
    "SigningCertURL",
    "SubscribeURL",
    "Token",
    "Subject",
)
WRONG_TYPES: tuple[str, ...] = ('{"a": 1}', "[1, 2]", "12", "1e400", "null", "true", '"ü✓"')


def _sns_bodies() -> Iterator[bytes]:
    for field in SNS_FIELDS:
        for value in WRONG_TYPES:
            base = {
                "Type": '"Notification"',
                "TopicArn": '"arn:aws:sns:us-east-1:123456789012:formrelay"',
                "Timestamp": '"2024-01-01T00:00:00.000Z"',
                "SignatureVersion": '"1"',
            }
            base[field] = value
            yield ("{" + ", ".join(f'"{k}": {v}' for k, v in base.items()) + "}").encode()
    yield b"[" * 100_000 + b"]" * 100_000
    yield b'{"a": ' * 50_000 + b"1" + b"}" * 50_000
    yield b"[" * 100_000
    yield b'{"Type": "Notification", "Timestamp": "0001-01-01T00:00:00+14:00"}'
    yield b'{"Signature": "\xc3\xbc\xc3\xbc", "Type": "Notification"}'


@dataclass
class Owned:
    """One of each object, owned by the signed-in admin: the path arguments' good values."""

    values: dict[str, str]


@pytest.fixture
def owned(app: Flask) -> Owned:
    session = db.session
    admin = make_user(session, "owner@example.com", admin=True)
    other = make_user(session, "member@example.com", admin=False)
    form = make_form(session, owner=admin, name="Contact")
    submission = make_submission(session, form)
    delivery = make_delivery(session, submission, status=DeliveryStatus.FAILED)
    suppression, _ = suppressions.suppress(
        session, "gone@example.com", reason="manual", source="test", actor=admin
    )
    session.commit()
    recipient = form.recipients[0]
    return Owned(
        {
            "key": form.key,
            "project": "project",
            "token": "not-a-token",
            "submission_id": str(submission.id),
            "attachment_id": "1",
            "delivery_id": str(delivery.id),
            "user_id": str(other.id),
            "suppression_id": str(suppression.id),
            "recipient_id": str(recipient.id),
        }
    )


@pytest.fixture
def admin_client(app: Flask, owned: Owned) -> FlaskClient:
    client = app.test_client()
    AuthActions(client).login("owner@example.com")
    # Off only now: signing in above went through the real form, token and all.
    app.config["WTF_CSRF_ENABLED"] = False
    return client


ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([A-Za-z_]\w*)>")


# Endpoints whose POST removes what the walk's later requests use: walked last.
DESTRUCTIVE = ("delete", "remove", "disable", "empty", "logout")


def _rules(app: Flask) -> list[Rule]:
    def order(rule: Rule) -> tuple[bool, str]:
        return any(word in rule.endpoint for word in DESTRUCTIVE), rule.rule

    return sorted((r for r in app.url_map.iter_rules() if r.endpoint != "static"), key=order)


def _path(rule: Rule, values: dict[str, str]) -> str:
    return ARGUMENT.sub(lambda m: values[m.group(1)], rule.rule)


def _is_int(rule: Rule, name: str) -> bool:
    return isinstance(rule._converters[name], IntegerConverter)


def _request(client: FlaskClient, method: str, path: str, **kwargs: object) -> tuple[int, str]:
    response = client.open(path, method=method, **kwargs)  # type: ignore[arg-type]
    status = response.status_code
    allow = response.headers.get("Allow", "")
    response.close()
    return status, allow


def _no_server_error(found: list[str], what: str, status: int) -> None:
    if status == 503 and "/readyz" in what:
        return  # not ready: no worker has reported in this test (web/health.py)
    if status >= 500:
        found.append(f"{status} {what}")


def _walk_paths(app: Flask, client: FlaskClient, owned: Owned, signed_in: bool) -> list[str]:
    found: list[str] = []
    for rule in _rules(app):
        for name in rule._converters:
            bad_values = BAD_IDS if _is_int(rule, name) else BAD_WORDS
            for bad in bad_values:
                value = bad if bad.startswith("%") else quote(bad, safe="")
                path = _path(rule, {**owned.values, name: value})
                for method in sorted(rule.methods or ()):
                    status, _ = _request(client, method, path)
                    what = f"{method} {path[:120]} ({rule.endpoint})"
                    _no_server_error(found, what, status)
                    # No object has this id: not found, whatever else the route does.
                    int_id = signed_in and _is_int(rule, name) and method != "OPTIONS"
                    if int_id and status != 404:
                        found.append(f"{status}, not 404: {what}")
    return found


def test_out_of_range_and_wrong_typed_path_arguments_never_fail(
    app: Flask, admin_client: FlaskClient, owned: Owned
) -> None:
    found = _walk_paths(app, admin_client, owned, signed_in=True)
    found += _walk_paths(app, app.test_client(), owned, signed_in=False)
    assert not found, "\n".join(found)


def test_bad_query_parameters_are_refused_never_fail(
    app: Flask, admin_client: FlaskClient, owned: Owned
) -> None:
    found: list[str] = []
    for client in (admin_client, app.test_client()):
        for rule in _rules(app):
            if "GET" not in (rule.methods or ()):
                continue
            path = _path(rule, owned.values)
            for parameter, values in QUERY_PARAMETERS.items():
                for value in values:
                    status, _ = _request(client, "GET", path, query_string={parameter: value})
                    _no_server_error(found, f"GET {path}?{parameter}={value[:40]!r}", status)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("endpoint", sorted(FILTERED_ENDPOINTS))
def test_a_filter_out_of_range_is_a_400_naming_it(
    app: Flask, admin_client: FlaskClient, owned: Owned, endpoint: str
) -> None:
    rule = next(r for r in _rules(app) if r.endpoint == endpoint)
    for parameter, value in OUT_OF_RANGE_FILTERS:
        query = {parameter: value}
        json = admin_client.get(
            _path(rule, owned.values), query_string=query, headers={"Accept": "application/json"}
        )
        assert (json.status_code, json.get_json()) == (
            400,
            {
                "ok": False,
                "error": json.get_json()["error"],
                "errors": [{"code": "INVALID", "message": json.get_json()["error"]}],
            },
        )
        assert json.get_json()["error"].startswith(f"{parameter} {value!r} is out of range")
        page = admin_client.get(_path(rule, owned.values), query_string=query)
        assert (page.status_code, page.mimetype) == (400, "text/html")
        assert f"{parameter} {value!r} is out of range" in html.unescape(
            page.get_data(as_text=True)
        )


def test_bad_bodies_never_fail(app: Flask, admin_client: FlaskClient, owned: Owned) -> None:
    found: list[str] = []
    for rule in _rules(app):
        if "POST" not in (rule.methods or ()) or rule.endpoint in ("auth.logout",):
            continue
        path = _path(rule, owned.values)
        for body in _bad_bodies():
            status, _ = _request(admin_client, "POST", path, data=body)
            _no_server_error(found, f"POST {path} {sorted(body)[:3]}={body.get('id')}", status)
        if rule.endpoint.startswith("hooks."):
            for raw in _sns_bodies():
                status, _ = _request(
                    admin_client,
                    "POST",
                    path,
                    data=raw,
                    headers={"Content-Type": "text/plain; charset=UTF-8"},
                )
                _no_server_error(found, f"POST {path} {raw[:60]!r}", status)
                if status != 403 and raw.lstrip()[:1] in (b"{", b"["):
                    found.append(f"{status}, not 403: POST {path} {raw[:60]!r}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("signed_in", [True, False], ids=["admin", "signed-out"])
def test_a_405_allows_only_methods_that_are_answered(
    app: Flask, admin_client: FlaskClient, owned: Owned, signed_in: bool
) -> None:
    client = admin_client if signed_in else app.test_client()
    found: list[str] = []
    for rule in _rules(app):
        if rule.endpoint in ("auth.logout",):
            continue  # a POST would end the session the walk signs in with
        path = _path(rule, owned.values)
        statuses = {}
        allowed: set[str] = set()
        for method in METHODS:
            status, allow = _request(client, method, path)
            statuses[method] = status
            _no_server_error(found, f"{method} {path}", status)
            if status == 405:
                allowed |= {m.strip() for m in allow.split(",") if m.strip()}
                if not allow:
                    found.append(f"405 without Allow: {method} {path}")
        for method in sorted(allowed):
            if statuses.get(method) == 405:
                found.append(f"Allow lists {method}, which answers 405: {path}")
    assert not found, "\n".join(found)
