"""Multipart bodies read as they arrive: fields kept, files streamed to storage.

A multipart body is fed to werkzeug's sans-IO decoder chunk by chunk. Its fields are held
(within FORMRELAY_MAX_BODY_BYTES, as any body), and each file goes to storage as its bytes
come, so that a 50 MB file never sits whole in memory. The first file makes the one query
that reads the form's upload policy; until a form that takes files is known, the body is
held to FORMRELAY_MAX_BODY_BYTES, and after it to FORMRELAY_MAX_UPLOAD_BODY_BYTES and the
form's limits. Whatever refuses the request, every object written for it is removed
before the error leaves (`ReceivedFiles.discard`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import Request
from sqlalchemy import select
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from ..extensions import db
from ..ingest import CommitTimedOut
from ..models import Form
from ..services import attachments
from ..services.attachments import SNIFF_BYTES, StoredFile, UploadPolicy
from ..services.errors import FormDisabled, FormNotFound, SubmissionRejected
from ..services.submissions import PreparedSubmission
from ..settings import Settings
from ..storage import Storage, Writer, get_storage, new_key
from .payload import MULTIPART, Payload, add_field, incomplete_body, refuse_unstorable

CHUNK = 64 * 1024
_POLICY = select(
    Form.enabled,
    Form.files_enabled,
    Form.max_file_mb,
    Form.max_total_mb,
    Form.max_files,
    Form.allowed_types,
)


def is_multipart(content_type: str | None) -> bool:
    return parse_options_header(content_type or "")[0].lower() == MULTIPART


@dataclass
class ReceivedFiles:
    """The files one request stored; `discard` removes them (a refusal, a failed commit)."""

    storage: Storage
    files: list[StoredFile] = field(default_factory=list)

    def discard(self) -> None:
        attachments.discard(self.storage, [f.storage_key for f in self.files])
        self.files = []


@contextmanager
def attach_files(
    received: ReceivedFiles | None, prepared: PreparedSubmission
) -> Iterator[PreparedSubmission]:
    """The submission with its stored files, for group commit; if the block raises (the
    commit failed, the form went away), the files are removed. A commit that only timed
    out may still land: its files stay, and the sweep removes them if it did not."""
    if received is None or not received.files:
        yield prepared
        return
    try:
        yield dataclasses.replace(prepared, files=tuple(received.files))
    except CommitTimedOut:
        raise
    except BaseException:
        received.discard()
        raise


def receive_multipart(
    request: Request, key: str, config: Settings
) -> tuple[Payload, ReceivedFiles]:
    """Read a multipart body: its fields, and its files stored.

    Raises SubmissionRejected (PAYLOAD_TOO_LARGE, INCOMPLETE_BODY, INVALID_MULTIPART,
    INVALID_ENCODING, TOO_MANY_FIELDS, NO_FILE_UPLOADS, FILES_TOO_BIG, TOO_MANY_FILES,
    FILE_TYPE_NOT_ALLOWED), FormNotFound or FormDisabled (for a body with files); nothing
    it stored is left behind then.
    """
    reader = _MultipartReader(request, key, config, get_storage(config))
    try:
        payload = reader.read()
    except BaseException:
        reader.abort()
        raise
    return payload, reader.received


class _MultipartReader:
    def __init__(self, request: Request, key: str, config: Settings, storage: Storage) -> None:
        self.request = request
        self.key = key
        self.config = config
        self.received = ReceivedFiles(storage)
        self.payload = Payload()
        self.policy: UploadPolicy | None = None
        self.limit = config.max_body_bytes
        self.field_bytes = 0
        self.total_file_bytes = 0
        # The part being read: a field's chunks, or a file's state.
        self.part: Field | File | None = None
        self.chunks: list[bytes] = []
        self.file_name = ""
        self.file_field = ""
        self.file_size = 0
        self.head = bytearray()
        self.writer: Writer | None = None
        self.writer_key = ""
        self.content_type = ""

    def read(self) -> Payload:
        options = parse_options_header(self.request.content_type or "")[1]
        boundary = options.get("boundary", "")
        if not boundary:
            raise SubmissionRejected(
                "INVALID_MULTIPART", "The multipart body has no boundary in its Content-Type."
            )
        expected = self.request.content_length
        if expected is not None and expected > self.config.max_upload_body_bytes:
            raise self._too_large(self.config.max_upload_body_bytes)
        decoder = MultipartDecoder(boundary.encode("latin-1", "replace"))
        received = 0
        stream = self.request.stream
        finished = False
        try:
            while True:
                want = CHUNK if expected is None else min(CHUNK, expected - received)
                chunk = stream.read(want) if want > 0 else b""
                if not chunk:
                    break
                received += len(chunk)
                if received > self.limit:
                    raise self._too_large(self.limit)
                decoder.receive_data(chunk)
                finished = self._events(decoder)
                if finished:
                    break
            if expected is not None and received < expected and not finished:
                raise incomplete_body(expected)
            if not finished:
                decoder.receive_data(None)
                finished = self._events(decoder)
        except (ClientDisconnected, OSError):
            raise incomplete_body(expected) from None
        except ValueError:
            raise SubmissionRejected(
                "INVALID_MULTIPART", "The multipart body is malformed."
            ) from None
        if not finished:
            raise SubmissionRejected("INVALID_MULTIPART", "The multipart body ends before its end.")
        refuse_unstorable(self.payload.fields)
        return self.payload

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.received.discard()

    def _too_large(self, limit: int) -> SubmissionRejected:
        return SubmissionRejected(
            "PAYLOAD_TOO_LARGE", f"The submission is larger than the {limit // 1024} KB accepted."
        )

    def _events(self, decoder: MultipartDecoder) -> bool:
        """Handle the events decoded so far; True at the body's end."""
        while True:
            event = decoder.next_event()
            if isinstance(event, NeedData):
                return False
            if isinstance(event, Epilogue):
                return True
            if isinstance(event, Field | File):
                self._start(event)
            elif isinstance(event, Data) and self.part is not None:
                self._data(event.data)
                if not event.more_data:
                    self._end()

    def _start(self, part: Field | File) -> None:
        self.part, self.chunks = part, []
        if isinstance(part, File):
            self.file_field = _name(part.name)
            self.file_name = part.filename or ""
            self.file_size = 0
            self.head = bytearray()

    def _data(self, data: bytes) -> None:
        if isinstance(self.part, Field):
            self.field_bytes += len(data)
            if self.field_bytes > self.config.max_body_bytes:
                raise self._too_large(self.config.max_body_bytes)
            self.chunks.append(data)
            return
        if not data:
            return
        policy = self._policy()
        if self.file_size == 0 and not self.head:
            self._check_count_and_name(policy)
        self.file_size += len(data)
        self.total_file_bytes += len(data)
        if self.file_size > policy.max_file_bytes:
            raise attachments.too_big(
                self.file_field, self.file_name, policy.max_file_bytes, total=False
            )
        if self.total_file_bytes > policy.max_total_bytes:
            raise attachments.too_big(
                self.file_field, self.file_name, policy.max_total_bytes, total=True
            )
        if self.writer is None:
            self.head += data
            if len(self.head) >= SNIFF_BYTES:
                self._open_writer(policy)
        else:
            self.writer.write(data)

    def _end(self) -> None:
        part, self.part = self.part, None
        if isinstance(part, Field):
            add_field(self.payload, _name(part.name), b"".join(self.chunks))
            if len(self.payload.fields) > self.config.max_fields:
                raise SubmissionRejected(
                    "TOO_MANY_FIELDS",
                    f"The form has more than {self.config.max_fields} fields, the most accepted.",
                )
            return
        if self.file_size == 0:
            # A browser sends an empty file input as a part with no filename and no bytes;
            # an empty file that has a name is kept (it is what was chosen).
            if not self.file_name:
                return
            policy = self._policy()
            self._check_count_and_name(policy)
        if self.writer is None:
            self._open_writer(self._policy())
        assert self.writer is not None
        writer, self.writer = self.writer, None
        writer.close()
        self.received.files.append(
            StoredFile(
                self.file_field,
                self.file_name,
                self.content_type,
                self.file_size,
                self.writer_key,
            )
        )

    def _check_count_and_name(self, policy: UploadPolicy) -> None:
        self.file_name = attachments.sanitise_filename(self.file_name)
        if len(self.received.files) >= policy.max_files:
            raise attachments.too_many(self.file_field, self.file_name, policy.max_files)
        attachments.check_extension(policy, self.file_field, self.file_name)

    def _open_writer(self, policy: UploadPolicy) -> None:
        head = bytes(self.head)
        self.content_type = attachments.check_content(
            policy, self.file_field, self.file_name, head[:SNIFF_BYTES]
        )
        self.writer_key = new_key()
        self.writer = self.received.storage.writer(self.writer_key)
        self.writer.write(head)
        self.head = bytearray()

    def _policy(self) -> UploadPolicy:
        """The form's upload policy, read at the first file; raises NO_FILE_UPLOADS when the
        form takes none, FormNotFound or FormDisabled."""
        if self.policy is not None:
            return self.policy
        row = db.session.execute(_POLICY.where(Form.key == self.key)).first()
        db.session.rollback()  # no transaction held open while the file arrives
        if row is None:
            raise FormNotFound()
        if not row.enabled:
            raise FormDisabled()
        if not row.files_enabled:
            raise SubmissionRejected(
                "NO_FILE_UPLOADS", "File uploads are not enabled for this form."
            )
        self.policy = UploadPolicy.of(
            max_file_mb=row.max_file_mb,
            max_total_mb=row.max_total_mb,
            max_files=row.max_files,
            allowed_types=row.allowed_types,
        )
        self.limit = self.config.max_upload_body_bytes
        return self.policy


def _name(raw: str | None) -> str:
    # werkzeug decodes part headers as UTF-8 (strictly: bad bytes are INVALID_MULTIPART).
    return raw or ""
