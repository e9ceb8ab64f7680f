"""What upload tests share: local or S3 storage (moto in server mode), a form that takes
files, multipart bodies, and what storage holds."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from formrelay.extensions import db
from formrelay.models import Attachment, Form

from .factories import make_form
from .servers import free_port

REGION = "us-east-1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


@pytest.fixture(scope="session")
def moto_s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Stored:
    """The objects a storage holds, as an observer lists them."""

    def __init__(self, kind: str, root: Path, client: Any = None, bucket: str = "") -> None:
        self.kind, self.root, self.client, self.bucket = kind, root, client, bucket

    def objects(self) -> list[str]:
        """Every object and unfinished write (a .part file, an open multipart upload)."""
        if self.kind == "local":
            if not self.root.exists():
                return []
            return sorted(p.name for p in self.root.rglob("*") if p.is_file())
        listed = self.client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return sorted([o["Key"] for o in listed] + [f"upload:{u['Key']}" for u in uploads])

    def read(self, key: str) -> bytes:
        if self.kind == "local":
            return (self.root / key[:2] / key).read_bytes()
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=f"uploads/{key}")[
            "Body"
        ].read()
        return body

    def head(self, key: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=f"uploads/{key}")
        return answer


@pytest.fixture(params=["local", "s3"])
def storage(
    request: pytest.FixtureRequest,
    app_config: dict[str, object],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Stored:
    """Each test once with local storage and once with S3 (moto); set before `app`."""
    root = tmp_path / "uploads"
    app_config["upload_dir"] = str(root)
    if request.param == "local":
        return Stored("local", root)
    url = request.getfixturevalue("moto_s3_url")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = f"formrelay-test-{secrets.token_hex(6)}"
    client = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=bucket)
    app_config.update(
        storage="s3",
        s3_bucket=bucket,
        aws_region=REGION,
        aws_endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return Stored("s3", root, client, bucket)


def make_files_form(**settings: object) -> Form:
    """A committed form that takes files, with these upload settings changed."""
    form = make_form(db.session)
    form.files_enabled = True
    for name, value in settings.items():
        setattr(form, name, value)
    db.session.commit()
    return form


def attachments() -> list[Attachment]:
    db.session.rollback()
    return list(db.session.scalars(select(Attachment).order_by(Attachment.id)))


def multipart(
    parts: list[tuple[str, str | tuple[str, bytes, str]]], boundary: str = "XyZbOuNdArY"
) -> bytes:
    """A multipart/form-data body in exactly this part order; a file is (name, data, type)."""
    out = b""
    for name, value in parts:
        if isinstance(value, tuple):
            filename, data, ctype = value
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n"
            )
            out += f"--{boundary}\r\n".encode() + head.encode() + data + b"\r\n"
        else:
            out += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            ).encode()
    return out + f"--{boundary}--\r\n".encode()


def post(client: Any, form: Form, parts: list[Any], *, json: bool = True, **kwargs: Any) -> Any:
    return client.post(
        f"/f/{form.key}",
        data=multipart(parts),
        content_type="multipart/form-data; boundary=XyZbOuNdArY",
        headers={"Accept": "application/json" if json else "text/html"},
        **kwargs,
    )
