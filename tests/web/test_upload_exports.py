"""Exports carry each file's name, size and a download link (to the dashboard)."""

from __future__ import annotations

import csv
import io
import json

from formrelay.extensions import db
from formrelay.models import Form

from ..uploads import PDF, PNG, attachments, make_files_form, post


def two_files(client) -> Form:
    form = make_files_form()
    r = post(
        client,
        form,
        [
            ("name", "Ann"),
            ("cv", ("cv.pdf", PDF, "application/pdf")),
            ("photo", ("=me.png", PNG, "image/png")),
        ],
    )
    assert r.status_code == 200, r.json
    assert post(client, form, [("name", "Bob")]).status_code == 200
    return form


def test_json_export_lists_each_files_name_size_and_link(client, auth):
    form = two_files(client)
    auth.login()
    r = client.get(f"/forms/{form.key}/export.json")
    assert r.status_code == 200
    bob, ann = json.loads(r.get_data())
    cv, photo = attachments()
    assert bob["files"] == []
    assert ann["files"] == [
        {
            "field": "cv",
            "name": "cv.pdf",
            "size": len(PDF),
            "content_type": "application/pdf",
            "url": f"http://forms.test/submissions/{ann['id']}/files/{cv.id}",
        },
        {
            "field": "photo",
            "name": "=me.png",
            "size": len(PNG),
            "content_type": "image/png",
            "url": f"http://forms.test/submissions/{ann['id']}/files/{photo.id}",
        },
    ]
    # The link works for the owner.
    download = client.get(ann["files"][0]["url"].removeprefix("http://forms.test"))
    assert download.get_data() == PDF
    download.close()


def test_csv_export_has_a_files_column_when_there_are_files(client, auth):
    form = two_files(client)
    auth.login()
    r = client.get(f"/forms/{form.key}/export.csv")
    rows = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    cv, photo = attachments()
    assert rows[0] == ["id", "time", "name", "files"]
    assert rows[1][2:] == ["Bob", ""]
    sid = cv.submission_id
    assert rows[2][2:] == [
        "Ann",
        f"cv.pdf ({len(PDF)} bytes) http://forms.test/submissions/{sid}/files/{cv.id}\n"
        f"=me.png ({len(PNG)} bytes) http://forms.test/submissions/{sid}/files/{photo.id}",
    ]


def test_csv_export_without_files_has_no_files_column(client, auth):
    form = make_files_form()
    assert post(client, form, [("name", "Bob")]).status_code == 200
    auth.login()
    r = client.get(f"/forms/{form.key}/export.csv")
    assert r.get_data(as_text=True).splitlines()[0] == "id,time,name"
    db.session.rollback()
