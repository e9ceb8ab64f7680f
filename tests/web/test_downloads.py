"""Downloading uploaded files: from the dashboard (signed in, the owner's only) and through
signed links that expire and cannot be forged or moved; always as an attachment."""

from __future__ import annotations

import urllib.request
from datetime import timedelta
from urllib.parse import unquote

import pytest
from itsdangerous import URLSafeTimedSerializer
from werkzeug.datastructures import Headers

from formrelay.extensions import db
from formrelay.services import attachments as files
from formrelay.settings import get_settings

from ..factories import make_user
from ..uploads import (
    PDF,
    Stored,
    attachments,
    make_files_form,
    moto_s3_url,
    post,
    storage,
)

__all__ = ["moto_s3_url", "storage"]  # fixtures, imported for pytest

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.cookie)"></svg>'
HTML = b"<!doctype html><script>fetch('/forms').then(r => r.text()).then(alert)</script>"


def uploaded(client, *parts):
    form = make_files_form(allowed_types="pdf,html,svg")
    r = post(client, form, list(parts))
    assert r.status_code == 200, r.json
    return attachments()


def dashboard_path(a) -> str:
    return f"/submissions/{a.submission_id}/files/{a.id}"


def fetched(client, path: str, storage: Stored):
    """The download as a browser gets it: for S3, the presigned redirect followed."""
    r = client.get(path)
    body = r.get_data()
    r.close()
    if storage.kind == "s3" and r.status_code == 302:
        with urllib.request.urlopen(r.headers["Location"]) as answer:
            return r, answer.read(), Headers(list(answer.headers.items()))
    return r, body, r.headers


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("page.html", HTML, "text/html"),
        ("logo.svg", SVG, "image/svg+xml"),
        ("cv.pdf", PDF, "application/pdf"),
    ],
)
def test_a_download_is_an_attachment_that_never_renders(storage, client, auth, name, data, kind):
    [a] = uploaded(client, ("f", (name, data, kind)))
    auth.login()
    r, body, headers = fetched(client, dashboard_path(a), storage)
    assert body == data
    if storage.kind == "local":
        assert r.status_code == 200
        assert r.headers["Content-Disposition"] == f"attachment; filename={name}"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert r.mimetype == kind
    else:  # served by S3, from S3's origin, as an attachment too
        assert r.status_code == 302
        assert headers["Content-Disposition"] == f"attachment; filename*=UTF-8''{name}"
        assert headers["Content-Type"] == kind
        assert r.headers["Location"].startswith(get_settings().aws_endpoint_url)


def test_a_unicode_name_is_offered_as_it_was_sent(storage, client, auth):
    [a] = uploaded(client, ("f", ("Lebenslauf Zoë.pdf", PDF, "application/pdf")))
    auth.login()
    _, body, headers = fetched(client, dashboard_path(a), storage)
    assert body == PDF
    disposition = headers["Content-Disposition"]
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "Lebenslauf Zoë.pdf"


def test_downloads_ask_a_signed_out_visitor_to_log_in(storage, client):
    [a] = uploaded(client, ("f", ("cv.pdf", PDF, "application/pdf")))
    r = client.get(dashboard_path(a))
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_another_users_files_do_not_exist_for_them(storage, client, auth):
    [a] = uploaded(client, ("f", ("cv.pdf", PDF, "application/pdf")))
    make_user(db.session, "other@example.com", admin=False)
    db.session.commit()
    auth.login("other@example.com")
    assert client.get(dashboard_path(a)).status_code == 404
    # Nor through another submission's path, even their own.
    assert client.get(f"/submissions/{a.submission_id}/files/{a.id + 1}").status_code == 404


def test_a_signed_link_downloads_without_an_account(storage, client):
    [a] = uploaded(client, ("f", ("cv.pdf", PDF, "application/pdf")))
    url = files.download_url(get_settings(), a)
    _, body, headers = fetched(client, url.removeprefix(get_settings().base_url), storage)
    assert body == PDF
    assert headers["Content-Disposition"].startswith("attachment;")


def test_a_signed_link_cannot_be_forged_or_moved_to_another_file(storage, client):
    [a, b] = uploaded(
        client,
        ("f", ("one.pdf", PDF, "application/pdf")),
        ("g", ("two.pdf", PDF + b"two", "application/pdf")),
    )
    settings = get_settings()
    token = files.download_token(settings, a)
    # Altered by one character: the signature's first, whose six bits all count (the last
    # character's low bits are base64 padding, so changing A to B there can decode the same).
    head, signature = token.rsplit(".", 1)
    flipped = f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    assert client.get(f"/files/{flipped}").status_code == 400
    # Signed with another key.
    forged = URLSafeTimedSerializer("guessed", salt="formrelay.download").dumps({"a": b.id})
    assert client.get(f"/files/{forged}").status_code == 400
    # Re-signed for another row: needs the secret key; without it the payload is rejected.
    moved = URLSafeTimedSerializer(settings.secret_key, salt="formrelay.download").dumps(
        {"a": b.id, "k": token}
    )
    assert client.get(f"/files/{moved}").status_code == 400
    # A sign-in token is no download token.
    other = URLSafeTimedSerializer(settings.secret_key, salt="formrelay.sign-in").dumps({"a": a.id})
    assert client.get(f"/files/{other}").status_code == 400
    r = client.get(f"/files/{token}")
    r.close()
    assert r.status_code == (302 if storage.kind == "s3" else 200)


def test_a_signed_link_expires(storage, client, monkeypatch):
    [a] = uploaded(client, ("f", ("cv.pdf", PDF, "application/pdf")))
    settings = get_settings()
    token = files.download_token(settings, a)
    import time

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + timedelta(days=7, minutes=1).total_seconds())
    r = client.get(f"/files/{token}", headers={"Accept": "application/json"})
    assert r.status_code == 410
    assert r.json["errors"][0]["code"] == "TOKEN_EXPIRED"


def test_a_link_to_a_deleted_file_is_gone(storage, client, auth):
    [a] = uploaded(client, ("f", ("cv.pdf", PDF, "application/pdf")))
    token = files.download_token(get_settings(), a)
    from formrelay.services import inbox
    from formrelay.services.accounts import find_user

    inbox.delete_submissions(
        db.session, find_user(db.session, "owner@example.com"), [a.submission_id]
    )
    db.session.commit()
    assert storage.objects() == []
    assert client.get(f"/files/{token}").status_code == 404


def test_local_files_go_out_through_the_front_server_when_configured(storage, app_config, tmp_path):
    if storage.kind != "local":
        pytest.skip("local storage only")
    from formrelay import create_app

    for mode, header, expected in [
        (
            "x-sendfile",
            "X-Sendfile",
            lambda a: str(storage.root / a.storage_key[:2] / a.storage_key),
        ),
        (
            "x-accel-redirect",
            "X-Accel-Redirect",
            lambda a: f"/_uploads/{a.storage_key[:2]}/{a.storage_key}",
        ),
    ]:
        app = create_app({**app_config, "sendfile": mode})
        with app.app_context():
            client = app.test_client()
            [a] = uploaded(client, ("f", ("cv.pdf", PDF, "application/pdf")))
            r = client.get(
                files.download_url(get_settings(), a).removeprefix(get_settings().base_url)
            )
            assert r.status_code == 200 and r.get_data() == b""
            assert r.headers[header] == expected(a)
            assert r.headers["Content-Disposition"] == 'attachment; filename="cv.pdf"'
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            from formrelay.models import Attachment, Submission

            db.session.query(Attachment).delete()
            db.session.query(Submission).delete()
            db.session.commit()
            db.session.remove()
            db.engine.dispose()


def test_the_submission_page_lists_its_files_with_their_links(storage, client, auth):
    [a] = uploaded(client, ("cv", ("Lebenslauf Zoë.pdf", PDF, "application/pdf")))
    auth.login()
    page = client.get(f"/submissions/{a.submission_id}").get_data(as_text=True)
    assert f'href="{dashboard_path(a)}"' in page
    assert "Lebenslauf Zoë.pdf</a>" in page
    assert f"(cv, {len(PDF)} bytes, application/pdf)" in page
