"""Files that come with submissions: names, the form's policy, sniffing, links, the sweep.

Nothing here imports flask. Storage objects are written by the web edge (web/uploads.py)
before the submission's transaction; removing them waits for the commit that removes
their rows (`forget_after_commit`), and `sweep_orphans` removes any object no row names.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import filetype
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Attachment, Form, Submission, utcnow
from .errors import NotFound, SubmissionRejected
from .tokens import TokenExpired, TokenInvalid

if TYPE_CHECKING:
    from ..settings import Settings
    from ..storage import Storage

log = logging.getLogger("formrelay.attachments")

MAX_FILENAME = 200
MB = 1024 * 1024
# How much of a file is read before it is sniffed and written anywhere.
SNIFF_BYTES = 8192
# An object younger than this may belong to an upload whose commit is on its way.
SWEEP_GRACE = timedelta(hours=1)
_DISCARD = "formrelay.discard_files"
_DOWNLOAD_SALT = "formrelay.download"

# Kinds of content refused unless the owner lists one of their extensions themselves.
DANGEROUS = {
    "executable": frozenset(
        {"exe", "dll", "msi", "com", "scr", "cpl", "elf", "so", "dylib", "bin", "app", "apk",
         "jar", "deb", "rpm", "dmg", "pkg", "appimage", "lnk", "msc", "wasm"}
    ),
    "script": frozenset(
        {"sh", "bash", "zsh", "command", "py", "pl", "rb", "php", "js", "mjs", "cjs", "bat",
         "cmd", "ps1", "psm1", "vbs", "vbe", "jse", "wsf", "wsh", "hta", "reg"}
    ),
    "html": frozenset({"html", "htm", "xhtml", "xht", "shtml", "mht", "mhtml"}),
    "svg": frozenset({"svg", "svgz"}),
}  # fmt: skip
# filetype's names for executables, to the dangerous kind they are.
_EXECUTABLE_KINDS = frozenset({"exe", "elf", "dex", "macho", "mach-o", "dmg", "swf", "wasm"})
# Extensions (and filetype's guesses) that name the same kind of content.
_KIND = {
    "jpeg": "jpg",
    "tiff": "tif",
    "docx": "zip",
    "xlsx": "zip",
    "pptx": "zip",
    "odt": "zip",
    "ods": "zip",
    "odp": "zip",
    "epub": "zip",
    "jar": "zip",
    "apk": "zip",
    "heif": "heic",
    "mov": "mp4",
    "m4a": "mp4",
    "m4v": "mp4",
    "doc": "ole",
    "xls": "ole",
    "ppt": "ole",
    "msg": "ole",
}
# Every extension filetype recognises content for: a file named so must hold that content.
_SIGNED_EXTENSIONS = frozenset(kind.extension for kind in filetype.types) | frozenset(
    {"jpeg", "tiff", "docx", "xlsx", "pptx", "odt", "ods", "odp", "doc", "xls", "ppt"}
)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# What browsers take for HTML when they sniff (WHATWG MIME Sniffing, "text/html" patterns),
# after a BOM, white space and comments.
_HTML_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body|script|iframe"
    rb"|meta|title|style|object|embed|a|div|img|form|table|font|br|p|h1|b)[\s>/]",
    re.IGNORECASE | re.DOTALL,
)
# An XML document (or a bare root element) that is an SVG image or XHTML page: it runs scripts
# when opened in a browser.
_XML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<(?:\?xml|!doctype|svg|!--)", re.IGNORECASE)
_SVG = re.compile(rb"<svg[\s>/]", re.IGNORECASE)
_XHTML = re.compile(rb"<html[\s>/]", re.IGNORECASE)
_SCRIPT_START = re.compile(rb"^(?:\xef\xbb\xbf)?(?:#!|<\?php|<%)", re.IGNORECASE)
# Dropped: control characters and the invisible ones that reorder or hide text (bidi
# overrides show "cv\u202efdp.exe" as "cvexe.pdf"). Replaced: what a file system reserves.
_INVISIBLE_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_RESERVED_CHARACTERS = re.compile(r'[<>:"/\\|?*]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\.|$)", re.IGNORECASE)


@dataclass(frozen=True)
class UploadPolicy:
    """What a form accepts in files (its row's columns, read in one query)."""

    max_file_bytes: int
    max_total_bytes: int
    max_files: int
    allowed: frozenset[str]  # extensions; "*" for any

    @classmethod
    def of(
        cls, *, max_file_mb: int, max_total_mb: int, max_files: int, allowed_types: str
    ) -> UploadPolicy:
        return cls(max_file_mb * MB, max_total_mb * MB, max_files, parse_types(allowed_types))

    def allows_extension(self, extension: str) -> bool:
        if extension in self.allowed:
            return True
        return "*" in self.allowed and not any(extension in e for e in DANGEROUS.values())


@dataclass(frozen=True)
class StoredFile:
    """A file written to storage for a submission not yet committed."""

    field: str
    filename: str
    content_type: str
    size: int
    storage_key: str


def parse_types(raw: str) -> frozenset[str]:
    """Extensions from "pdf, .PNG jpg": lower case, without dots."""
    return frozenset(
        part.strip().lstrip(".").lower() for part in re.split(r"[\s,;]+", raw) if part.strip(". ")
    )


def clean_types(raw: str) -> str:
    """The allowed-types setting as stored: sorted, comma-separated. Raises ValueError for an
    extension that is not letters and digits."""
    types = parse_types(raw)
    for extension in types:
        if extension != "*" and not re.fullmatch(r"[a-z0-9][a-z0-9+_-]{0,15}", extension):
            raise ValueError(f"{extension!r} is not a file extension")
    return ",".join(sorted(types))


def sanitise_filename(raw: str) -> str:
    """A name fit to show and to offer as a download: the last path segment, NFC, no control,
    bidi or reserved characters, no leading dots, at most MAX_FILENAME characters (keeping
    the extension); "file" when nothing is left."""
    name = _INVISIBLE_CHARACTERS.sub("", unicodedata.normalize("NFC", raw))
    name = re.split(r"[/\\]", name)[-1]
    name = _RESERVED_CHARACTERS.sub("_", name)
    name = " ".join(name.split()).strip(". ")
    if _WINDOWS_RESERVED.match(name):
        name = "_" + name
    if len(name) > MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_FILENAME - len(extension) - 1].rstrip(". ") + "." + extension
        else:
            name = name[:MAX_FILENAME].rstrip(". ")
    return name or "file"


def extension_of(filename: str) -> str:
    stem, dot, extension = filename.rpartition(".")
    return extension.lower() if dot and stem else ""


def check_extension(policy: UploadPolicy, field: str, filename: str) -> str:
    """The file's extension if the form takes it. Raises FILE_TYPE_NOT_ALLOWED."""
    extension = extension_of(filename)
    if not policy.allows_extension(extension):
        what = f".{extension} files" if extension else "files without an extension"
        raise SubmissionRejected(
            "FILE_TYPE_NOT_ALLOWED",
            f"{filename}: {what} are not accepted; this form takes {_listed(policy.allowed)}.",
            field,
        )
    return extension


def sniff(head: bytes) -> str | None:
    """What the first bytes of a file say it is: filetype's extension, "ole", "html", "svg",
    "script", or None for plain text and unknown content."""
    if head.startswith(_OLE_MAGIC):
        return "ole"
    kind = filetype.guess(head) if head else None
    if kind is not None:
        return "executable" if kind.extension in _EXECUTABLE_KINDS else str(kind.extension)
    if head.startswith(b"MZ"):
        return "executable"
    if _SCRIPT_START.match(head):
        return "script"
    if _XML_START.match(head):
        if _SVG.search(head):
            return "svg"
        if _XHTML.search(head):
            return "html"
    if _HTML_START.match(head):
        return "html"
    return None


def check_content(policy: UploadPolicy, field: str, filename: str, head: bytes) -> str:
    """The content type to store the file with, once its first bytes agree with its name
    and the form's policy. Raises FILE_TYPE_NOT_ALLOWED naming the file."""
    extension = extension_of(filename)
    found = sniff(head)
    refused: str | None = None
    if found in DANGEROUS:
        # An executable, a script, HTML or SVG only where the owner listed such a type.
        if extension not in DANGEROUS[found] or extension not in policy.allowed:
            refused = {
                "executable": "a program",
                "script": "a script",
                "html": "an HTML page",
                "svg": "an SVG image (which can hold scripts)",
            }[found]
    elif found is not None:
        if extension and _kind(extension) != _kind(found) and extension in _SIGNED_EXTENSIONS:
            refused = f"{found.upper()} content, not .{extension}"
        elif (
            found not in policy.allowed
            and _kind(found) not in {_kind(e) for e in policy.allowed}
            and "*" not in policy.allowed
        ):
            refused = f"{found.upper()} content"
    elif extension in _SIGNED_EXTENSIONS - {"txt", "csv"}:
        refused = f"not the .{extension} content its name says"
    if refused:
        raise SubmissionRejected(
            "FILE_TYPE_NOT_ALLOWED",
            f"{filename}: this file is {refused}; this form takes {_listed(policy.allowed)}.",
            field,
        )
    return content_type_for(filename, found)


def content_type_for(filename: str, sniffed: str | None) -> str:
    if sniffed == "html":
        return "text/html"
    if sniffed == "svg":
        return "image/svg+xml"
    if sniffed and sniffed not in DANGEROUS and sniffed != "ole":
        kind = filetype.get_type(ext=sniffed)
        if kind is not None:
            return str(kind.mime)
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def _kind(extension: str) -> str:
    return _KIND.get(extension, extension)


def _listed(allowed: Iterable[str]) -> str:
    types = sorted(allowed)
    if "*" in types:
        return "any file but programs, scripts and web pages"
    return ", ".join(f".{t}" for t in types) if types else "no files"


def too_big(field: str, filename: str, limit: int, *, total: bool) -> SubmissionRejected:
    if total:
        message = f"{filename}: the files together are larger than the {_size(limit)} accepted."
    else:
        message = f"{filename} is larger than the {_size(limit)} accepted for one file."
    return SubmissionRejected("FILES_TOO_BIG", message, field)


def too_many(field: str, filename: str, limit: int) -> SubmissionRejected:
    return SubmissionRejected(
        "TOO_MANY_FILES",
        f"{filename}: the form takes at most {limit} file{'s' if limit != 1 else ''}.",
        field,
    )


def _size(n: int) -> str:
    return f"{n // MB} MB" if n % MB == 0 else f"{n / MB:.1f} MB"


def format_size(n: int) -> str:
    """A size as people read it: 512 bytes, 3.2 KB, 12.5 MB."""
    if n < 1024:
        return f"{n} bytes"
    if n < MB:
        return f"{n / 1024:.1f} KB"
    return f"{n / MB:.1f} MB"


# -- rows ---------------------------------------------------------------------------------
def attachment_rows(submission_id: int, files: Sequence[StoredFile]) -> list[dict[str, Any]]:
    """Rows for the attachments table (a Core insert in the submission's transaction)."""
    now = utcnow()
    return [
        {
            "submission_id": submission_id,
            "field": f.field[:200],
            "filename": f.filename,
            "content_type": f.content_type[:255],
            "size": f.size,
            "storage_key": f.storage_key,
            "created_at": now,
        }
        for f in files
    ]


def load_attachment(session: Session, submission: Submission, attachment_id: int) -> Attachment:
    """One of the submission's files. Raises NotFound."""
    found = next((a for a in submission.attachments if a.id == attachment_id), None)
    if found is None:
        raise NotFound("This submission has no such file.")
    return found


def storage_keys(session: Session, submission_ids: Sequence[int]) -> list[str]:
    """The storage keys of these submissions' files."""
    keys: list[str] = []
    for start in range(0, len(submission_ids), 500):
        chunk = submission_ids[start : start + 500]
        keys.extend(
            session.scalars(
                select(Attachment.storage_key).where(Attachment.submission_id.in_(chunk))
            )
        )
    return keys


def form_storage_keys(session: Session, form: Form) -> list[str]:
    return list(
        session.scalars(
            select(Attachment.storage_key)
            .join(Submission, Submission.id == Attachment.submission_id)
            .where(Submission.form_id == form.id)
        )
    )


def forget_after_commit(session: Session, keys: Iterable[str]) -> None:
    """Remove these stored objects once the session's transaction commits (the rows that
    named them are deleted in it); a rollback keeps them. The web app, the CLI and the
    worker do the removing (storage.init_app); a crash before it leaves orphans for
    `sweep_orphans`."""
    pending: list[str] = session.info.setdefault(_DISCARD, [])
    pending.extend(keys)


def take_forgotten(session: Session) -> list[str]:
    """The keys `forget_after_commit` queued, cleared (after a commit or a rollback)."""
    keys: list[str] = session.info.pop(_DISCARD, [])
    return keys


def discard(storage: Storage, keys: Iterable[str]) -> int:
    """Delete stored objects, logging (not raising) a failure: the sweep retries. Returns
    how many were deleted."""
    deleted = 0
    for key in keys:
        try:
            storage.delete(key)
            deleted += 1
        except Exception as exc:  # a storage outage must not undo what was committed
            log.warning("could not delete stored file %s (the sweep will retry): %s", key, exc)
    return deleted


def sweep_orphans(
    session: Session,
    storage: Storage,
    *,
    now: datetime | None = None,
    grace: timedelta = SWEEP_GRACE,
) -> list[str]:
    """Delete the stored objects older than `grace` that no attachment row names (a crash
    between storing a file and committing its submission, or before a deletion's objects
    were removed). Returns their keys."""
    cutoff = (now or utcnow()) - grace
    orphans: list[str] = []
    batch: list[str] = []

    def check(keys: list[str]) -> None:
        known = set(
            session.scalars(select(Attachment.storage_key).where(Attachment.storage_key.in_(keys)))
        )
        for key in keys:
            if key not in known:
                storage.delete(key)
                orphans.append(key)

    for key in storage.keys(cutoff):
        batch.append(key)
        if len(batch) >= 500:
            check(batch)
            batch = []
    if batch:
        check(batch)
    return orphans


# -- signed download links ----------------------------------------------------------------
def download_token(settings: Settings, attachment: Attachment) -> str:
    """A link token for one file: it names the row and the object it points to, so that it
    cannot be moved to another file, and expires after FORMRELAY_DOWNLOAD_LINK_DAYS."""
    return _serializer(settings).dumps({"a": attachment.id, "k": _key_digest(attachment)})


def download_url(settings: Settings, attachment: Attachment) -> str:
    return f"{settings.base_url}/files/{download_token(settings, attachment)}"


def dashboard_url(settings: Settings, attachment: Attachment) -> str:
    """Where a signed-in owner downloads the file (what exports carry)."""
    return f"{settings.base_url}/submissions/{attachment.submission_id}/files/{attachment.id}"


def check_download_token(session: Session, settings: Settings, token: str) -> Attachment:
    """The file a link names. Raises TokenInvalid (forged, altered, or pointing to another
    object than the row's), TokenExpired, or NotFound (the file was deleted)."""
    try:
        payload = _serializer(settings).loads(
            token, max_age=int(timedelta(days=settings.download_link_days).total_seconds())
        )
    except SignatureExpired:
        raise TokenExpired(
            "This download link has expired: open the file from the dashboard."
        ) from None
    except BadSignature:
        raise TokenInvalid() from None
    if not isinstance(payload, dict) or not isinstance(payload.get("a"), int):
        raise TokenInvalid()
    attachment = session.get(Attachment, payload["a"])
    if attachment is None:
        raise NotFound("This file has been deleted.")
    if payload.get("k") != _key_digest(attachment):
        raise TokenInvalid()
    return attachment


def _key_digest(attachment: Attachment) -> str:
    return hashlib.sha256(attachment.storage_key.encode()).hexdigest()[:32]


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=_DOWNLOAD_SALT)
