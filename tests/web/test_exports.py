"""Downloading a filter's submissions from the dashboard: who may, what comes, how it comes."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient

from formrelay.extensions import db
from formrelay.models import Form, utcnow

from ..auth import AuthActions
from ..factories import make_form, make_submission, make_user

OWNER, OTHER, ADMIN = "owner@example.com", "other@example.com", "admin@example.com"


@pytest.fixture
def form(app) -> Form:
    make_user(db.session, OWNER, admin=False)
    make_user(db.session, OTHER, admin=False)
    make_user(db.session, ADMIN, admin=True)
    db.session.commit()
    owner = make_user(db.session, OWNER)
    return make_form(db.session, owner=owner)


def table(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


@pytest.mark.parametrize(
    "url",
    [
        "/forms/{key}/export.csv",
        "/forms/{key}/export.json",
        "/submissions/export.csv",
        "/submissions/export.json",
    ],
)
def test_a_signed_out_visitor_is_asked_to_log_in(client: FlaskClient, form: Form, url: str) -> None:
    response = client.get(url.format(key=form.key))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_another_users_form_does_not_exist_for_them(
    client: FlaskClient, auth: AuthActions, form: Form, fmt: str
) -> None:
    make_submission(db.session, form)
    auth.login(OTHER)
    assert client.get(f"/forms/{form.key}/export.{fmt}").status_code == 404
    assert client.get(f"/forms/no-such-key/export.{fmt}").status_code == 404


def test_the_owner_downloads_a_csv_attachment_streamed(
    client: FlaskClient, auth: AuthActions, form: Form
) -> None:
    submission = make_submission(
        db.session,
        form,
        fields={"name": "Zoë", "phone": "+1 555 0100"},
        created_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
    )
    auth.login(OWNER)
    response = client.get(f"/forms/{form.key}/export.csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    today = utcnow().date().isoformat()
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="contact-{today}.csv"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert table(response.data) == [
        ["id", "time", "name", "phone"],
        [str(submission.id), "2026-12-01T08:00:00Z", "Zoë", "'+1 555 0100"],
    ]


def test_the_json_download_is_the_records_array(
    client: FlaskClient, auth: AuthActions, form: Form
) -> None:
    submission = make_submission(db.session, form, fields={"message": "hi"})
    auth.login(OWNER)
    response = client.get(f"/forms/{form.key}/export.json")
    assert response.is_streamed
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    today = utcnow().date().isoformat()
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="contact-{today}.json"'
    )
    [record] = json.loads(response.data)
    assert record["id"] == submission.id
    assert record["form"] == form.key
    assert record["fields"] == [["message", "hi"]]


def test_the_export_shows_what_the_pages_filter_shows(
    client: FlaskClient, auth: AuthActions, form: Form
) -> None:
    make_submission(db.session, form, fields={"message": "kept"})
    make_submission(db.session, form, fields={"message": "junk"}, spam=True)
    make_submission(
        db.session,
        form,
        fields={"message": "last year"},
        created_at=datetime(2025, 6, 1, tzinfo=UTC),
    )
    auth.login(OWNER)

    def messages(query: str) -> list[str]:
        response = client.get(f"/forms/{form.key}/export.csv?{query}")
        assert response.status_code == 200
        return [row[2] for row in table(response.data)[1:]]

    assert messages("") == ["kept", "last year"]
    assert messages("folder=spam") == ["junk"]
    assert messages("since=2025-01-01&until=2025-12-31") == ["last year"]
    spam = client.get(f"/forms/{form.key}/export.csv?folder=spam")
    assert 'filename="contact-spam-' in spam.headers["Content-Disposition"]


def test_a_form_named_in_other_letters_downloads_as_its_name_with_an_ascii_fallback(
    client: FlaskClient, auth: AuthActions, form: Form
) -> None:
    form.name = "Café Été / Контакт"
    db.session.commit()
    auth.login(OWNER)
    today = utcnow().date().isoformat()
    for fmt in ("csv", "json"):
        response = client.get(f"/forms/{form.key}/export.{fmt}")
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="cafe-ete--{today}.{fmt}"; '
            f"filename*=UTF-8''caf%C3%A9-%C3%A9t%C3%A9-%D0%BA%D0%BE%D0%BD%D1%82%D0%B0%D0%BA%D1%82"
            f"-{today}.{fmt}"
        )


def test_a_bad_filter_is_a_clear_400(client: FlaskClient, auth: AuthActions, form: Form) -> None:
    auth.login(OWNER)
    page = client.get(f"/forms/{form.key}/export.csv?since=last+week")
    assert page.status_code == 400
    assert "since must be a day" in page.get_data(as_text=True)
    api = client.get(
        f"/forms/{form.key}/export.json?folder=trash", headers={"Accept": "application/json"}
    )
    assert api.status_code == 400
    assert api.json is not None and "folder must be inbox or spam" in api.json["error"]


def test_across_forms_a_user_gets_only_their_own_and_an_admin_gets_all(
    client: FlaskClient, auth: AuthActions, form: Form
) -> None:
    others = make_form(db.session, owner=make_user(db.session, OTHER), name="Theirs")
    make_submission(db.session, form, fields={"message": "mine"})
    make_submission(db.session, others, fields={"message": "theirs"})

    def messages() -> list[str]:
        response = client.get("/submissions/export.csv")
        assert response.status_code == 200
        assert response.headers["Content-Disposition"].startswith(
            'attachment; filename="submissions-'
        )
        return sorted(row[2] for row in table(response.data)[1:])

    auth.login(OWNER)
    assert messages() == ["mine"]
    auth.logout()
    auth.login(ADMIN)
    assert messages() == ["mine", "theirs"]
    assert client.get(f"/forms/{form.key}/export.csv").status_code == 200


def test_the_submissions_page_links_exports_of_what_it_shows(
    client: FlaskClient, auth: AuthActions
) -> None:
    owner = make_user(db.session, "ann@example.org")
    form = make_form(db.session, owner=owner, recipients=["ann@example.org"])
    kept = make_submission(db.session, form, fields=[("message", "marmalade order")])
    make_submission(db.session, form, fields=[("message", "something else")])
    db.session.commit()
    auth.login("ann@example.org")
    page = client.get(f"/forms/{form.key}", query_string={"q": "marmalade"}).get_data(as_text=True)
    link = re.search(r'href="([^"]*export\.csv[^"]*)"', page)
    assert link, "no CSV export link on the submissions page"
    rows = list(csv.reader(io.StringIO(client.get(html.unescape(link.group(1))).text)))
    assert [row[0] for row in rows[1:]] == [str(kept.id)]
