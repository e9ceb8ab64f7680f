"""Notifications of submissions with files: small files attached, every file linked, and a
message kept within what the mail server says it takes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from formrelay.worker import make_worker

from ..mailserver import MailServer, point_app_at
from ..uploads import PDF, attachments, make_files_form, post
from .test_ses import aws_isolated, moto_url, ses, verified_sender

__all__ = ["aws_isolated", "moto_url", "ses", "verified_sender"]  # fixtures, for pytest

OWNER = "owner@example.com"


@pytest.fixture
def server() -> Iterator[MailServer]:
    with MailServer() as running:
        yield running


@pytest.fixture
def mail_config(app_config, server, tmp_path):
    point_app_at(app_config, server.port)
    app_config.update(upload_dir=str(tmp_path / "uploads"), attach_max_bytes=50_000)
    return app_config


def send(app) -> list[str]:
    return [o.status for o in make_worker(app).drain()]


def test_a_small_file_is_attached_and_every_file_linked(server, mail_config, app, client):
    form = make_files_form(max_file_mb=2)
    big = PDF + b"x" * 60_000  # over FORMRELAY_ATTACH_MAX_BYTES here: linked only
    r = post(
        client,
        form,
        [
            ("message", "see attached"),
            ("cv", ("Lebenslauf Zoë.pdf", PDF, "application/pdf")),
            ("portfolio", ("big.pdf", big, "application/pdf")),
        ],
    )
    assert r.status_code == 200, r.json
    assert send(app) == ["sent"]
    [received] = server.received
    message = received.message
    assert message.get_content_type() == "multipart/mixed"
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == "Lebenslauf Zoë.pdf"
    assert attached.get_content_type() == "application/pdf"
    assert attached.get_content() == PDF
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Lebenslauf Zoë.pdf (" in text and ", attached)" in text
    assert "big.pdf (58.6 KB)\n" in text
    links = re.findall(r"http://forms\.test/files/\S+", text)
    assert len(links) == 2
    # The links download the files, with no account.
    for link, data in zip(links, [PDF, big], strict=True):
        response = client.get(link.removeprefix("http://forms.test"))
        assert response.get_data() == data
        response.close()


def test_files_that_would_pass_the_servers_size_stay_linked_only(app_config, tmp_path):
    from formrelay import create_app
    from formrelay.extensions import db

    with MailServer(data_size_limit=40_000) as small:
        point_app_at(app_config, small.port)
        app_config.update(upload_dir=str(tmp_path / "uploads"), attach_max_bytes=100_000)
        app = create_app(app_config)
        with app.app_context():
            client = app.test_client()
            form = make_files_form()
            r = post(
                client,
                form,
                [
                    ("a", ("small.pdf", PDF + b"s" * 5_000, "application/pdf")),
                    ("b", ("big.pdf", PDF + b"x" * 30_000, "application/pdf")),
                    ("c", ("tiny.pdf", PDF, "application/pdf")),
                ],
            )
            assert r.status_code == 200, r.json
            assert send(app) == ["sent"]
            [received] = small.received
            assert len(received.content) <= 40_000
            message = received.message
            assert [a.get_filename() for a in message.iter_attachments()] == [
                "small.pdf",
                "tiny.pdf",
            ]
            texts = [
                p.get_content() for p in message.walk() if p.get_content_type() == "text/plain"
            ]
            assert texts[-1].startswith("Not attached (big.pdf): with them this message would")
            assert "larger than the 40000 bytes the mail server accepts" in texts[-1]
            body = message.get_body(("plain",)).get_content()
            assert body.count("http://forms.test/files/") == 3
            assert [a.filename for a in attachments()] == ["small.pdf", "big.pdf", "tiny.pdf"]
            db.session.remove()
            db.engine.dispose()


def test_ses_sends_small_files_attached_within_its_limit(verified_sender, app_config, tmp_path):
    from email import message_from_string, policy

    from formrelay import create_app
    from formrelay.extensions import db

    app_config.update(upload_dir=str(tmp_path / "uploads"))
    app = create_app(app_config)
    with app.app_context():
        client = app.test_client()
        form = make_files_form()
        r = post(client, form, [("cv", ("cv.pdf", PDF, "application/pdf"))])
        assert r.status_code == 200, r.json
        assert send(app) == ["sent"]
        [sent] = verified_sender.sent()
        message = message_from_string(sent["raw_data"], policy=policy.default)
        [attached] = list(message.iter_attachments())
        assert (attached.get_filename(), attached.get_content()) == ("cv.pdf", PDF)
        db.session.remove()
        db.engine.dispose()


def test_the_ses_budget_stays_under_its_40_mb_message_limit():
    from formrelay.delivery.message import _to_attach
    from formrelay.models import Attachment
    from formrelay.settings import load_settings

    settings = load_settings(
        {"MAIL_BACKEND": "ses", "AWS_REGION": "us-east-1", "MAIL_DEFAULT_SENDER": "f@example.com",
         "FORMRELAY_ATTACH_MAX_BYTES": str(20 * 1024 * 1024),
         "FORMRELAY_ATTACH_TOTAL_BYTES": str(100 * 1024 * 1024)}
    )  # fmt: skip
    files = [Attachment(filename=f"{n}.pdf", size=15 * 1024 * 1024) for n in range(3)]
    chosen = _to_attach(files, settings)
    assert [a.filename for a in chosen] == ["0.pdf"]  # two would be 40 MB after base64
    assert sum(a.size for a in chosen) * 4 / 3 < 40 * 1024 * 1024


def test_a_zero_attachment_size_links_every_file():
    from formrelay.delivery.message import _to_attach
    from formrelay.models import Attachment
    from formrelay.settings import load_settings

    settings = load_settings({"FORMRELAY_ATTACH_MAX_BYTES": "0"})
    assert _to_attach([Attachment(filename="empty.txt", size=0)], settings) == []
