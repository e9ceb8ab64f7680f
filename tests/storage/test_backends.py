"""The storage backends through their interface: local and S3 (moto in server mode)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from formrelay.cli import cli
from formrelay.models import utcnow
from formrelay.settings import load_settings
from formrelay.storage import Storage, StorageError, get_storage, new_key
from formrelay.storage.s3 import PART_BYTES

from ..uploads import Stored, moto_s3_url, storage

__all__ = ["moto_s3_url", "storage"]  # fixtures, imported for pytest


@pytest.fixture
def backend(storage: Stored, app_config: dict[str, object]) -> Storage:
    environ = {
        "FORMRELAY_INSTANCE_PATH": str(app_config["instance_path"]),
        "FORMRELAY_UPLOAD_PATH": str(app_config["upload_dir"]),
    }
    if storage.kind == "s3":
        environ |= {
            "FORMRELAY_STORAGE": "s3",
            "FORMRELAY_S3_BUCKET": str(app_config["s3_bucket"]),
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": str(app_config["aws_endpoint_url"]),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    return get_storage(load_settings(environ))


def test_an_object_is_visible_only_once_closed_and_reads_back_whole(storage, backend):
    key = new_key()
    writer = backend.writer(key)
    data = bytes(range(256)) * 4096 * 6  # 6 MiB: past one S3 part
    for start in range(0, len(data), 65536):
        writer.write(data[start : start + 65536])
    finished = key if storage.kind == "local" else f"uploads/{key}"
    assert finished not in storage.objects()
    writer.close()
    assert finished in storage.objects()
    with backend.open(key) as stream:
        assert stream.read() == data
    backend.delete(key)
    backend.delete(key)  # a missing object is no error
    assert storage.objects() == []


def test_an_aborted_write_leaves_nothing(storage, backend):
    writer = backend.writer(new_key())
    writer.write(b"x" * (PART_BYTES + 10))  # an S3 multipart upload is open by now
    assert storage.objects() != []
    writer.abort()
    assert storage.objects() == []


def test_keys_lists_only_what_is_older_than_asked(storage, backend):
    key = new_key()
    writer = backend.writer(key)
    writer.write(b"data")
    writer.close()
    assert list(backend.keys(utcnow() - timedelta(minutes=5))) == []
    assert list(backend.keys(utcnow() + timedelta(minutes=5))) == [key]


def test_the_check_writes_reads_and_deletes_a_probe(storage, backend):
    assert "deleted" in backend.check()
    assert storage.objects() == []


def test_a_storage_that_cannot_be_written_fails_its_check(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    broken = get_storage(load_settings({"FORMRELAY_UPLOAD_PATH": str(blocker / "uploads")}))
    with pytest.raises(StorageError, match="cannot write"):
        broken.check()


def test_config_check_storage_reports_the_storage(
    storage, app_config, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FORMRELAY_INSTANCE_PATH", str(app_config["instance_path"]))
    monkeypatch.setenv("FORMRELAY_UPLOAD_PATH", str(app_config["upload_dir"]))
    if storage.kind == "s3":
        for var, value in {
            "FORMRELAY_STORAGE": "s3",
            "FORMRELAY_S3_BUCKET": str(app_config["s3_bucket"]),
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": str(app_config["aws_endpoint_url"]),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }.items():
            monkeypatch.setenv(var, value)
    result = CliRunner().invoke(cli, ["config", "check", "--storage"])
    assert result.exit_code == 0, result.output
    last = result.output.splitlines()[-1]
    if storage.kind == "local":
        assert last == f"storage OK (local): wrote, read and deleted a file in {storage.root}"
    else:
        bucket = app_config["s3_bucket"]
        assert last == (
            f"storage OK (s3): wrote (encrypted), read and deleted an object in "
            f"s3://{bucket}/uploads/"
        )


def test_config_check_storage_fails_with_status_1(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FORMRELAY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("FORMRELAY_UPLOAD_PATH", str(blocker / "uploads"))
    result = CliRunner().invoke(cli, ["config", "check", "--storage"])
    assert result.exit_code == 1
    assert "storage check failed (local): cannot write" in result.output


def test_stale_partial_writes_are_listed_for_the_sweep(tmp_path):
    local = get_storage(load_settings({"FORMRELAY_UPLOAD_PATH": str(tmp_path / "u")}))
    key = new_key()
    partial = tmp_path / "u" / key[:2] / f"{key}.part"  # what a process killed mid-write leaves
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(partial, (old, old))
    assert list(local.keys(utcnow() - timedelta(hours=1))) == [f"{key}.part"]
    local.delete(f"{key}.part")
    assert not partial.exists()
