"""Signing in from tests, as a browser does: read the page's CSRF token, post the form."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from .factories import PASSWORD

_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client: FlaskClient, page: str) -> str:
    """The CSRF token of the first form on `page` (GET)."""
    response = client.get(page)
    found = _TOKEN.search(response.get_data(as_text=True))
    assert found, f"no CSRF token on {page} ({response.status_code})"
    return found.group(1)


def post_form(
    client: FlaskClient,
    page: str,
    data: dict[str, object] | None = None,
    *,
    action: str | None = None,
) -> TestResponse:
    """Post `data` to `action` (default: `page`) with the token `page` carries."""
    fields = {"csrf_token": csrf_token(client, page), **(data or {})}
    return client.post(action or page, data=fields)


class AuthActions:
    """flaskr's AuthActions: log a user in and out through the real pages."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(
        self, email: str = "owner@example.com", password: str = PASSWORD, **extra: object
    ) -> TestResponse:
        response = post_form(self.client, "/login", {"email": email, "password": password, **extra})
        assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]
        return response

    def logout(self) -> TestResponse:
        return post_form(self.client, "/forms", action="/logout")
