"""Posting to a form as a JSON client and as a browser, and checking both answers."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import select
from werkzeug.test import TestResponse

from formrelay.extensions import db
from formrelay.models import Submission

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def post_json(client: FlaskClient, key: str, data: dict[str, Any], **headers: str) -> TestResponse:
    return client.post(
        f"/f/{key}", json=data, headers={"Accept": "application/json", **_names(headers)}
    )


def post_html(client: FlaskClient, key: str, data: dict[str, Any], **headers: str) -> TestResponse:
    return client.post(f"/f/{key}", data=data, headers={"Accept": BROWSER, **_names(headers)})


def _names(headers: dict[str, str]) -> dict[str, str]:
    # Origin="https://x", X_Forwarded_For="..." -> the header names.
    return {name.replace("_", "-"): value for name, value in headers.items()}


def assert_refused(
    client: FlaskClient,
    key: str,
    data: dict[str, Any],
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    html_data: dict[str, Any] | None = None,
    **headers: str,
) -> None:
    """Both shapes refuse `data` (the browser `html_data` when given: a CAPTCHA token is
    good once) with this status, code and message; nothing is stored."""
    before = len(stored())
    r = post_json(client, key, data, **headers)
    error = {"code": code, "message": message} | ({"field": field} if field else {})
    assert (r.status_code, r.json) == (
        status,
        {"ok": False, "error": message, "errors": [error]},
    )
    r = post_html(client, key, html_data or data, **headers)
    assert (r.status_code, r.mimetype) == (status, "text/html")
    assert "<h1>The form could not be sent</h1>" in r.text
    assert f'<p class="error">{escape(message)}</p>' in r.text
    assert len(stored()) == before


def assert_accepted(
    client: FlaskClient,
    key: str,
    data: dict[str, Any],
    html_data: dict[str, Any] | None = None,
    **headers: str,
) -> list[Submission]:
    """Both shapes answer success (JSON ok, browser 303); returns the two stored."""
    before = len(stored())
    r = post_json(client, key, data, **headers)
    assert r.status_code == 200, r.json
    assert r.json is not None and r.json["ok"] is True
    r = post_html(client, key, html_data or data, **headers)
    assert r.status_code == 303, r.text
    return stored()[before:]


def stored() -> list[Submission]:
    db.session.rollback()
    return list(db.session.scalars(select(Submission).order_by(Submission.id)))
