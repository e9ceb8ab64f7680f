"""Uploads in Amazon S3 (or anything speaking its API): server-side encryption on,
streamed with a multipart upload, downloaded by presigned redirect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import Served, StorageError, new_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from ..settings import Settings

# S3's smallest part but the last is 5 MiB: the least held in memory per upload (botocore
# keeps a copy while it signs and sends a part), 10 requests for a 50 MB file.
PART_BYTES = 5 * 1024 * 1024


class S3Writer:
    """Buffers one part at a time: a file smaller than a part is one PutObject; a larger one
    a multipart upload, completed by close and aborted by abort (nothing left behind)."""

    def __init__(self, storage: S3Storage, key: str) -> None:
        self.storage = storage
        self.key = key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[CompletedPartTypeDef] = []

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= PART_BYTES:
            chunk, self.buffer = bytes(self.buffer), bytearray()
            self._upload_part(chunk)

    def close(self) -> None:
        client, bucket = self.storage.client, self.storage.bucket
        try:
            if self.upload_id is None:
                client.put_object(
                    Bucket=bucket, Key=self.key, Body=bytes(self.buffer), **self.storage.sse
                )
            else:
                if self.buffer:
                    self._upload_part(bytes(self.buffer))
                client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": self.parts},
                )
        except (BotoCoreError, ClientError) as exc:
            self.abort()
            raise StorageError(f"S3 refused {self.key}: {exc}") from None
        self.buffer = bytearray()

    def abort(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is not None:
            with contextlib.suppress(BotoCoreError, ClientError):  # else the sweep aborts it
                self.storage.client.abort_multipart_upload(
                    Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id
                )
            self.upload_id = None

    def _upload_part(self, chunk: bytes) -> None:
        client, bucket = self.storage.client, self.storage.bucket
        try:
            if self.upload_id is None:
                started = client.create_multipart_upload(
                    Bucket=bucket, Key=self.key, **self.storage.sse
                )
                self.upload_id = started["UploadId"]
            number = len(self.parts) + 1
            answer = client.upload_part(
                Bucket=bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=chunk
            )
        except (BotoCoreError, ClientError) as exc:
            self.abort()
            raise StorageError(f"S3 refused a part of {self.key}: {exc}") from None
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})


class S3Storage:
    name = "s3"

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", *, sse: str = "AES256"
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.sse: dict[str, Any] = {"ServerSideEncryption": sse}

    @classmethod
    def from_settings(cls, s: Settings) -> S3Storage:
        client = boto3.client(
            "s3",
            region_name=s.aws_region or None,
            endpoint_url=s.aws_endpoint_url or None,
            aws_access_key_id=s.aws_access_key_id or None,
            aws_secret_access_key=s.aws_secret_access_key or None,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )
        return cls(client, s.s3_bucket, s.s3_prefix, sse=s.s3_sse)

    def object_key(self, key: str) -> str:
        return self.prefix + key

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self, self.object_key(key))

    def open(self, key: str) -> BinaryIO:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot read {key} from S3: {exc}") from None
        return cast(BinaryIO, answer["Body"])

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot delete {key} from S3: {exc}") from None

    def keys(self, older_than: datetime) -> Iterator[str]:
        try:
            # Multipart uploads a killed process left open hold parts (and cost) but no key.
            uploads = self.client.get_paginator("list_multipart_uploads")
            for listing in uploads.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in listing.get("Uploads", []):
                    if upload["Initiated"] < older_than:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
            objects = self.client.get_paginator("list_objects_v2")
            for page in objects.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    if item["LastModified"] < older_than:
                        yield item["Key"][len(self.prefix) :]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot list S3 bucket {self.bucket}: {exc}") from None

    def check(self) -> str:
        probe = new_key()
        writer = self.writer(probe)
        writer.write(b"formrelay storage check")
        writer.close()
        with contextlib.closing(self.open(probe)) as stream:
            ok = stream.read() == b"formrelay storage check"
        self.delete(probe)
        if not ok:
            raise StorageError(f"s3://{self.bucket} gave back other bytes than were written")
        return f"wrote (encrypted), read and deleted an object in s3://{self.bucket}/{self.prefix}"

    def serve(self, key: str, *, filename: str, content_type: str, expires_in: int) -> Served:
        disposition = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
        url = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.object_key(key),
                "ResponseContentDisposition": disposition,
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_in,
        )
        return Served(url=url)
