"""Downloads of uploaded files: from the dashboard (signed in, authorised like every other
page) and through the signed, expiring links notification e-mails carry.

Every download is an attachment, never rendered: Content-Disposition: attachment,
X-Content-Type-Options: nosniff and a CSP that sandboxes whatever a browser might still
show, so that an uploaded HTML or SVG file never runs in formrelay's origin. Local files
go out through the front server (X-Sendfile, X-Accel-Redirect) when FORMRELAY_SENDFILE
says so, else streamed; S3 files by a redirect to a short-lived presigned URL, which
serves them from S3's origin.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from flask import Blueprint, Response, redirect, send_file
from flask_login import current_user, login_required

from ..extensions import db
from ..models import Attachment
from ..services import attachments, permissions
from ..services.errors import NotFound
from ..settings import get_settings
from ..storage import StorageError, get_storage

bp = Blueprint("files", __name__)

DOWNLOAD_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"
PRESIGNED_SECONDS = 300


@bp.get("/submissions/<int:submission_id>/files/<int:attachment_id>")
@login_required
def download(submission_id: int, attachment_id: int) -> Response:
    """A file of a submission the signed-in user may see (404 otherwise)."""
    session = db.session()
    submission = permissions.load_submission(session, current_user, submission_id)
    return _serve(attachments.load_attachment(session, submission, attachment_id))


@bp.get("/files/<token>")
def signed_download(token: str) -> Response:
    """The link in a notification: valid for FORMRELAY_DOWNLOAD_LINK_DAYS, for one file."""
    return _serve(attachments.check_download_token(db.session(), get_settings(), token))


def _serve(attachment: Attachment) -> Response:
    settings = get_settings()
    storage = get_storage(settings)
    try:
        served = storage.serve(
            attachment.storage_key,
            filename=attachment.filename,
            content_type=attachment.content_type,
            expires_in=PRESIGNED_SECONDS,
        )
    except StorageError:
        raise NotFound("This file is missing from storage.") from None
    db.session.rollback()  # nothing more to read: no transaction held while it streams
    if served.url is not None:
        response: Response = redirect(served.url, code=302)  # type: ignore[assignment]
        response.headers["Referrer-Policy"] = "no-referrer"
    else:
        assert served.path is not None and served.relative is not None
        if settings.sendfile:
            response = Response(status=200, mimetype=attachment.content_type)
            if settings.sendfile == "x-sendfile":
                response.headers["X-Sendfile"] = str(served.path)
            else:
                response.headers["X-Accel-Redirect"] = settings.sendfile_prefix + served.relative
            response.headers["Content-Disposition"] = attachment_disposition(attachment.filename)
        else:
            response = send_file(
                served.path,
                mimetype=attachment.content_type,
                as_attachment=True,
                download_name=attachment.filename,
                conditional=True,
                max_age=0,
            )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = DOWNLOAD_CSP
    response.headers["Cache-Control"] = "private, no-store"
    return response


def attachment_disposition(filename: str) -> str:
    """The Content-Disposition werkzeug's send_file would send: the name in ASCII, and in
    UTF-8 as RFC 6266's `filename*` when it is not ASCII."""
    simple = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    simple = simple.replace('"', "").replace("\\", "") or "file"
    if simple == filename:
        return f'attachment; filename="{simple}"'
    return f"attachment; filename=\"{simple}\"; filename*=UTF-8''{quote(filename, safe='')}"
