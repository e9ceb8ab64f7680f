"""POST /f/<key> with files: stored (locally or in S3), limited, sniffed, and never left
behind by a refusal, a failed commit or spam."""

from __future__ import annotations

from html import escape

import pytest
from sqlalchemy import func, select

from formrelay.extensions import db
from formrelay.models import Submission
from formrelay.services import inbox

from ..factories import make_form
from ..uploads import (
    PDF,
    PNG,
    Stored,
    attachments,
    make_files_form,
    moto_s3_url,
    multipart,
    post,
    storage,
)

__all__ = ["moto_s3_url", "storage"]  # fixtures, imported for pytest

BOUNDARY_TYPE = "multipart/form-data; boundary=XyZbOuNdArY"


def submissions() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Submission)) or 0


def test_a_file_is_stored_under_a_random_key_with_its_sanitised_name(storage: Stored, client):
    form = make_files_form()
    r = post(client, form, [("name", "Ann"), ("cv", ("cv.pdf", PDF, "application/pdf"))])
    assert r.status_code == 200, r.json
    [a] = attachments()
    assert (a.field, a.filename, a.content_type, a.size) == (
        "cv",
        "cv.pdf",
        "application/pdf",
        len(PDF),
    )
    assert a.submission_id == r.json["id"]
    # Random (a 2-letter name may well appear in 32 random characters; its file name cannot).
    assert "cv.pdf" not in a.storage_key and ".pdf" not in a.storage_key
    assert len(a.storage_key) >= 32
    key = a.storage_key if storage.kind == "local" else f"uploads/{a.storage_key}"
    assert storage.objects() == [key]
    assert storage.read(a.storage_key) == PDF
    db.session.rollback()
    assert db.session.get(Submission, r.json["id"]).fields == [["name", "Ann"]]


def test_s3_objects_are_encrypted_at_rest(storage: Stored, client):
    if storage.kind != "s3":
        pytest.skip("S3 only")
    form = make_files_form()
    assert post(client, form, [("cv", ("cv.pdf", PDF, "application/pdf"))]).status_code == 200
    [a] = attachments()
    assert storage.head(a.storage_key)["ServerSideEncryption"] == "AES256"


def test_a_large_file_goes_to_s3_in_parts_and_arrives_whole(storage: Stored, client):
    form = make_files_form(max_file_mb=30, max_total_mb=30)
    data = PDF + bytes(range(256)) * (20 * 1024 * 1024 // 256)  # 20 MB: four 5 MiB parts
    r = post(client, form, [("doc", ("big.pdf", data, "application/pdf"))])
    assert r.status_code == 200, r.json
    [a] = attachments()
    assert a.size == len(data)
    assert storage.read(a.storage_key) == data


def test_an_empty_file_input_is_no_file(storage: Stored, client):
    form = make_files_form()
    r = post(client, form, [("name", "Ann"), ("cv", ("", b"", "application/octet-stream"))])
    assert r.status_code == 200
    assert attachments() == [] and storage.objects() == []


def test_files_to_a_form_that_takes_none_are_refused_as_before(storage: Stored, client):
    form = make_form(db.session)
    r = post(client, form, [("cv", ("cv.pdf", PDF, "application/pdf"))])
    assert r.status_code == 400
    assert r.json["errors"] == [
        {"code": "NO_FILE_UPLOADS", "message": "File uploads are not enabled for this form."}
    ]
    assert storage.objects() == [] and submissions() == 0


def test_a_multipart_form_without_files_is_read_as_before(storage: Stored, client):
    form = make_form(db.session)
    r = post(client, form, [("name", "Zoë"), ("message", "hello")])
    assert r.status_code == 200
    db.session.rollback()
    assert db.session.scalars(select(Submission)).one().fields == [
        ["name", "Zoë"],
        ["message", "hello"],
    ]


# -- limits, in both shapes ------------------------------------------------------------
LIMITS = [
    pytest.param(
        {"max_file_mb": 1},
        [("a", ("big.pdf", PDF + b"x" * (1024 * 1024), "application/pdf"))],
        413,
        "FILES_TOO_BIG",
        "big.pdf is larger than the 1 MB accepted for one file.",
        id="file-size",
    ),
    pytest.param(
        {"max_file_mb": 2, "max_total_mb": 2},
        [
            ("a", ("one.pdf", PDF + b"x" * (1024 * 1024), "application/pdf")),
            ("b", ("two.pdf", PDF + b"x" * (1024 * 1024), "application/pdf")),
        ],
        413,
        "FILES_TOO_BIG",
        "two.pdf: the files together are larger than the 2 MB accepted.",
        id="total-size",
    ),
    pytest.param(
        {"max_files": 2},
        [("f", (f"{n}.png", PNG, "image/png")) for n in range(3)],
        400,
        "TOO_MANY_FILES",
        "2.png: the form takes at most 2 files.",
        id="count",
    ),
    pytest.param(
        {"allowed_types": "pdf,png"},
        [("a", ("notes.docx", PDF, "application/pdf"))],
        400,
        "FILE_TYPE_NOT_ALLOWED",
        "notes.docx: .docx files are not accepted; this form takes .pdf, .png.",
        id="extension",
    ),
    pytest.param(
        {"allowed_types": "pdf,png"},
        [("a", ("photo.png", PDF, "image/png"))],
        400,
        "FILE_TYPE_NOT_ALLOWED",
        "photo.png: this file is PDF content, not .png; this form takes .pdf, .png.",
        id="content-against-name",
    ),
    pytest.param(
        {"allowed_types": "txt"},
        [("a", ("readme.txt", b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 100, "text/plain"))],
        400,
        "FILE_TYPE_NOT_ALLOWED",
        "readme.txt: this file is a program; this form takes .txt.",
        id="executable",
    ),
    pytest.param(
        {"allowed_types": "txt"},
        [("a", ("page.txt", b"<!DOCTYPE html><script>alert(1)</script>", "text/plain"))],
        400,
        "FILE_TYPE_NOT_ALLOWED",
        "page.txt: this file is an HTML page; this form takes .txt.",
        id="html",
    ),
    pytest.param(
        {"allowed_types": "txt"},
        [("a", ("run.txt", b"#!/bin/sh\nrm -rf /\n", "text/plain"))],
        400,
        "FILE_TYPE_NOT_ALLOWED",
        "run.txt: this file is a script; this form takes .txt.",
        id="script",
    ),
]


@pytest.mark.parametrize(("settings", "files", "status", "code", "message"), LIMITS)
def test_a_file_over_a_limit_is_refused_in_json_naming_file_and_limit(
    storage: Stored, client, settings, files, status, code, message
):
    form = make_files_form(**settings)
    r = post(client, form, [("name", "Ann"), *files])
    assert r.status_code == status
    field = files[-1][0]
    assert r.json == {
        "ok": False,
        "error": message,
        "errors": [{"code": code, "message": message, "field": field}],
    }
    assert storage.objects() == [] and submissions() == 0 and attachments() == []


@pytest.mark.parametrize(("settings", "files", "status", "code", "message"), LIMITS)
def test_a_file_over_a_limit_is_refused_on_a_page_naming_file_and_limit(
    storage: Stored, client, settings, files, status, code, message
):
    form = make_files_form(**settings)
    r = post(client, form, [*files], json=False)
    assert r.status_code == status
    assert r.mimetype == "text/html"
    assert escape(message) in r.get_data(as_text=True)
    assert storage.objects() == [] and submissions() == 0


def test_the_body_ceiling_of_a_file_form_is_its_own(storage: Stored, client, app_config):
    form = make_files_form(max_file_mb=1)
    body = multipart([("a", ("big.pdf", PDF + b"x" * 300_000, "application/pdf"))])
    assert len(body) > 100 * 1024  # over FORMRELAY_MAX_BODY_BYTES, which text forms keep
    r = client.post(f"/f/{form.key}", data=body, content_type=BOUNDARY_TYPE)
    assert r.status_code == 303
    text_form = make_form(db.session)
    r = client.post(
        f"/f/{text_form.key}",
        data=multipart([("message", "x" * 200_000)]),
        content_type=BOUNDARY_TYPE,
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 413 and r.json["errors"][0]["code"] == "PAYLOAD_TOO_LARGE"


def test_a_body_over_the_upload_ceiling_is_refused_before_it_is_read(app_config, storage: Stored):
    from formrelay import create_app

    app_config["max_upload_body_bytes"] = 200 * 1024
    app = create_app(app_config)
    with app.app_context():
        form = make_files_form(max_file_mb=5)
        r = app.test_client().post(
            f"/f/{form.key}",
            data=multipart([("a", ("big.pdf", PDF + b"x" * 300_000, "application/pdf"))]),
            content_type=BOUNDARY_TYPE,
            headers={"Accept": "application/json"},
        )
        assert r.status_code == 413 and r.json["errors"][0]["code"] == "PAYLOAD_TOO_LARGE"
        assert storage.objects() == []
        db.session.remove()
        db.engine.dispose()


def test_html_and_svg_need_the_owner_to_list_them(storage: Stored, client):
    form = make_files_form(allowed_types="pdf,png,html,svg")
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>'
    r = post(
        client,
        form,
        [
            ("a", ("page.html", b"<html><script>alert(1)</script></html>", "text/html")),
            ("b", ("logo.svg", svg, "image/svg+xml")),
        ],
    )
    assert r.status_code == 200, r.json
    assert [(a.filename, a.content_type) for a in attachments()] == [
        ("page.html", "text/html"),
        ("logo.svg", "image/svg+xml"),
    ]
    # An SVG under a .png name is still an SVG.
    r = post(client, form, [("b", ("logo.png", svg, "image/png"))])
    assert r.status_code == 400 and r.json["errors"][0]["code"] == "FILE_TYPE_NOT_ALLOWED"


# -- names -----------------------------------------------------------------------------
NAMES = [
    ("../../etc/passwd.txt", "passwd.txt"),
    (r"..\\..\\windows\\win.ini.txt", "win.ini.txt"),  # backslashes escaped in the header
    ("re\x00port.txt", "report.txt"),
    ("Grüße \u2013 履歴書.txt", "Grüße \u2013 履歴書.txt"),
    ("\u202etxt.exe.txt", "txt.exe.txt"),
    ("...txt", "txt"),
    ("CON.txt", "_CON.txt"),
    ("a" * 1000 + ".txt", "a" * 196 + ".txt"),
]


@pytest.mark.parametrize(("sent", "kept"), NAMES, ids=[n[:20] for n, _ in NAMES])
def test_a_filename_is_kept_sanitised_and_never_used_as_the_key(storage, client, sent, kept):
    form = make_files_form(allowed_types="*")
    head = f'Content-Disposition: form-data; name="f"; filename="{sent}"\r\n\r\n'
    body = b"--XyZbOuNdArY\r\n" + head.encode() + b"plain words\r\n--XyZbOuNdArY--\r\n"
    r = client.post(
        f"/f/{form.key}",
        data=body,
        content_type=BOUNDARY_TYPE,
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200, r.json
    [a] = attachments()
    assert a.filename == kept
    assert "/" not in a.storage_key and ".." not in a.storage_key
    if storage.kind == "local":
        assert [p.name for p in storage.root.rglob("*") if p.is_file()] == [a.storage_key]


def test_a_file_without_a_name_is_called_file(storage, client):
    form = make_files_form(allowed_types="*")
    head = 'Content-Disposition: form-data; name="f"; filename=""\r\n\r\n'
    body = b"--XyZbOuNdArY\r\n" + head.encode() + b"some text\r\n--XyZbOuNdArY--\r\n"
    r = client.post(
        f"/f/{form.key}",
        data=body,
        content_type=BOUNDARY_TYPE,
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200, r.json
    assert [a.filename for a in attachments()] == ["file"]


# -- durability ------------------------------------------------------------------------
def test_spam_keeps_its_files_until_the_spam_is_deleted(storage: Stored, client):
    form = make_files_form()
    r = post(client, form, [("cv", ("cv.pdf", PDF, "application/pdf")), ("_gotcha", "bot")])
    assert r.status_code == 200  # answered like any success
    db.session.rollback()
    kept = db.session.scalars(select(Submission)).one()
    assert kept.is_spam
    [attachment] = attachments()
    assert [o.rpartition("/")[2] for o in storage.objects()] == [attachment.storage_key]
    inbox.empty_spam(db.session, form.owner, form)
    db.session.commit()
    assert attachments() == [] and storage.objects() == []


def test_a_failed_commit_removes_the_files(storage: Stored, client, app, monkeypatch):
    from formrelay.services.outbox_sql import DriverWriter

    form = make_files_form()
    away = db.engine.dialect.dbapi.OperationalError  # the driver's: the committer's thread

    def fail(*args, **kwargs):
        raise away("disk I/O error")

    monkeypatch.setattr(DriverWriter, "insert_prepared", fail)
    r = post(client, form, [("cv", ("cv.pdf", PDF, "application/pdf"))])
    assert r.status_code == 503
    assert storage.objects() == [] and submissions() == 0


def test_a_form_disabled_while_the_file_arrives_keeps_nothing(storage: Stored, client):
    form = make_files_form()
    form.enabled = False
    db.session.commit()
    r = post(client, form, [("cv", ("cv.pdf", PDF, "application/pdf"))])
    assert r.status_code == 403 and r.json["errors"][0]["code"] == "INACTIVE"
    assert storage.objects() == []


def test_a_body_cut_short_in_a_file_leaves_nothing(storage: Stored, client):
    form = make_files_form()
    body = multipart([("cv", ("cv.pdf", PDF + b"x" * 100_000, "application/pdf"))])
    r = client.post(
        f"/f/{form.key}",
        data=body[: len(body) // 2],
        content_type=BOUNDARY_TYPE,
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 400
    assert r.json["errors"][0]["code"] in {"INVALID_MULTIPART", "INCOMPLETE_BODY"}
    assert storage.objects() == [] and submissions() == 0


def test_storage_that_fails_mid_upload_is_a_503_and_keeps_nothing(
    storage: Stored, client, monkeypatch
):
    from formrelay.settings import get_settings
    from formrelay.storage import StorageError, get_storage

    form = make_files_form(max_file_mb=2)
    store = get_storage(get_settings())
    real_writer = store.writer
    writes = {"n": 0}

    def failing_writer(key):
        writer = real_writer(key)
        real_write = writer.write

        def write(data):
            writes["n"] += 1
            if writes["n"] > 3:
                writer.abort()
                raise StorageError("disk full")
            real_write(data)

        monkeypatch.setattr(writer, "write", write)
        return writer

    monkeypatch.setattr(store, "writer", failing_writer)
    r = post(
        client,
        form,
        [
            ("a", ("one.pdf", PDF, "application/pdf")),
            ("b", ("two.pdf", PDF + b"x" * 1_000_000, "application/pdf")),
        ],
    )
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "30"
    assert r.json["errors"] == [
        {"code": "STORAGE_UNAVAILABLE", "message": "The service cannot store files right now."}
    ]
    assert storage.objects() == [] and submissions() == 0


def test_several_files_under_one_name_are_all_kept_in_order(storage: Stored, client):
    form = make_files_form()
    r = post(
        client,
        form,
        [
            ("photos", ("one.png", PNG, "image/png")),
            ("photos", ("two.png", PNG, "image/png")),
            ("cv", ("cv.pdf", PDF, "application/pdf")),
        ],
    )
    assert r.status_code == 200, r.json
    assert [(a.field, a.filename) for a in attachments()] == [
        ("photos", "one.png"),
        ("photos", "two.png"),
        ("cv", "cv.pdf"),
    ]
    assert len(storage.objects()) == 3


def test_a_file_to_a_form_that_does_not_exist_is_a_404_and_keeps_nothing(storage: Stored, client):
    r = client.post(
        "/f/no-such-form",
        data=multipart([("cv", ("cv.pdf", PDF, "application/pdf"))]),
        content_type=BOUNDARY_TYPE,
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 404
    assert r.json["errors"][0]["code"] == "FORM_NOT_FOUND"
    assert storage.objects() == []
