"""POST /hooks/ses: Amazon SNS notifications of SES's Bounce, Complaint and Delivery events.

Nothing is stored, fetched (beyond the signing certificate) or confirmed before the
message is verified (services/sns.py): a message that fails any check is answered 403 and
leaves no trace but a log line. A SubscriptionConfirmation is confirmed by visiting its
SubscribeURL; a message already handled (SNS retries, or a replay within MAX_AGE) is
answered 200 and not acted on again. With FORMRELAY_SNS_USERNAME set, a request without
those credentials is answered 401 with a Basic challenge, as SNS expects.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Flask, current_app, request
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Response

from ..db import begin_write
from ..extensions import db
from ..models import SNSMessage, utcnow
from ..services.ses_events import BadEvent, record_notification
from ..services.sns import MAX_AGE, SNSRejected, SNSVerifier
from ..settings import get_settings

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
log = logging.getLogger("formrelay.hooks")
_VERIFIER = "formrelay.sns_verifier"
MAX_BODY_BYTES = 300 * 1024  # SNS messages are at most 256 KB


def init_app(app: Flask, verifier: SNSVerifier | None = None) -> None:
    """Keep the verifier (its certificate cache lives as long as the app)."""
    app.extensions[_VERIFIER] = verifier or SNSVerifier()


def verifier() -> SNSVerifier:
    found: SNSVerifier = current_app.extensions[_VERIFIER]
    return found


def _text(body: str, status: int, **headers: str) -> Response:
    return Response(body + "\n", status, {"Content-Type": "text/plain; charset=utf-8", **headers})


def _authorized() -> bool:
    s = get_settings()
    if not s.sns_username:
        return True
    given = request.authorization
    if given is None or given.type != "basic":
        return False
    return hmac.compare_digest(
        (given.username or "").encode(), s.sns_username.encode()
    ) & hmac.compare_digest((given.password or "").encode(), s.sns_password.encode())


def _bounded_body() -> bytes | None:
    """The body, read no further than MAX_BODY_BYTES (None past it), with or without a
    Content-Length."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    received = 0
    try:
        while received <= MAX_BODY_BYTES:
            chunk = request.stream.read(MAX_BODY_BYTES + 1 - received)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
    except (OSError, ClientDisconnected):
        return b""  # cut short: not JSON, refused as such
    return None if received > MAX_BODY_BYTES else b"".join(chunks)


@bp.post("/ses")
def ses() -> Response:
    if not _authorized():
        return _text("unauthorized", 401, **{"WWW-Authenticate": 'Basic realm="formrelay"'})
    body = _bounded_body()
    if body is None:
        return _text("forbidden: too large for an SNS message", 403)
    try:
        message = verifier().verify(body, allowed_topics=get_settings().sns_topics, now=utcnow())
        header = request.headers.get("x-amz-sns-message-type")
        if header is not None and header != message.type:
            raise SNSRejected(f"x-amz-sns-message-type says {header}, the body {message.type}")
    except SNSRejected as exc:
        log.warning("/hooks/ses refused a message from %s: %s", request.remote_addr, exc)
        return _text(f"forbidden: {exc}", 403)

    session = db.session()
    handled = session.get(SNSMessage, message.message_id) is not None
    session.rollback()  # the write below begins as a writer (SQLite: see db.begin_write)
    if handled:
        return _text("already handled", 200)
    if message.type == "SubscriptionConfirmation":
        try:
            verifier().confirm(message)
        except SNSRejected as exc:
            log.warning("confirming the subscription to %s failed: %s", message.topic_arn, exc)
            return _text(f"forbidden: {exc}", 403)
        log.info("subscribed to %s", message.topic_arn)
    elif message.type == "UnsubscribeConfirmation":
        log.warning("SNS unsubscribed this endpoint from %s", message.topic_arn)
    begin_write(session)
    if session.get(SNSMessage, message.message_id) is not None:  # handled meanwhile
        session.rollback()
        return _text("already handled", 200)
    if message.type == "Notification":
        try:
            record_notification(session, message.message_id, message.message)
        except BadEvent as exc:
            # Genuine, but not an SES event: say so, once (SNS would retry anything but 2xx).
            log.warning("SNS notification %s: %s", message.message_id, exc)
    session.add(
        SNSMessage(
            message_id=message.message_id,
            message_type=message.type,
            topic_arn=message.topic_arn,
        )
    )
    # Ids older than any message still accepted guard against nothing: a replay of one is
    # refused for its Timestamp.
    session.execute(delete(SNSMessage).where(SNSMessage.received_at < utcnow() - 2 * MAX_AGE))
    try:
        session.commit()
    except IntegrityError:  # the same message handled meanwhile by another request
        session.rollback()
        return _text("already handled", 200)
    return _text("ok", 200)
