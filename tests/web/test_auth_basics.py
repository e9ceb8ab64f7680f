"""Signing in and out: the frame every dashboard page stands on."""

from __future__ import annotations

from flask.testing import FlaskClient

from formrelay.extensions import db

from ..auth import AuthActions, post_form
from ..factories import make_user


def test_forms_page_asks_a_signed_out_visitor_to_log_in(client: FlaskClient) -> None:
    response = client.get("/forms")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_owner_logs_in_and_out(client: FlaskClient, auth: AuthActions) -> None:
    make_user(db.session)
    db.session.commit()
    assert auth.login().headers["Location"] == "/forms"
    assert client.get("/forms").status_code == 200
    auth.logout()
    assert client.get("/forms").status_code == 302


def test_wrong_password_is_refused_with_the_same_words_as_an_unknown_address(
    client: FlaskClient,
) -> None:
    make_user(db.session)
    db.session.commit()
    wrong = post_form(client, "/login", {"email": "owner@example.com", "password": "nope-nope-1"})
    unknown = post_form(
        client, "/login", {"email": "nobody@example.com", "password": "nope-nope-1"}
    )
    assert wrong.status_code == unknown.status_code == 400
    assert "not right" in wrong.get_data(as_text=True)
    assert "not right" in unknown.get_data(as_text=True)


def test_login_without_its_csrf_token_is_refused(client: FlaskClient) -> None:
    make_user(db.session)
    db.session.commit()
    response = client.post("/login", data={"email": "owner@example.com", "password": "x"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_dashboard_pages_send_security_headers(client: FlaskClient) -> None:
    headers = client.get("/login").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "same-origin"


def test_hsts_is_sent_only_when_formrelay_is_served_over_https(
    app_config: dict[str, object],
) -> None:
    from formrelay import create_app

    app_config["base_url"] = "https://forms.example.org"
    secure = create_app(app_config).test_client()
    assert secure.get("/login").headers["Strict-Transport-Security"].startswith("max-age=")


def test_plain_http_sends_no_hsts(client: FlaskClient) -> None:
    assert "Strict-Transport-Security" not in client.get("/login").headers
