"""SES's Bounce, Complaint and Delivery events: recorded per recipient, mapped back to the
delivery that sent the message, turned into suppressions, and counted into rates.

The event comes as the Message of a verified SNS notification, in either of SES's shapes:
event publishing through a configuration set (`eventType`, with the message's tags) or
identity notifications (`notificationType`, without tags). The delivery is found by the
`formrelay-delivery` tag, else by the Message-ID formrelay gave the message.

A permanent bounce and a complaint suppress the address; a transient or undetermined
bounce is only recorded (SES itself retries those).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryStatus, Form, SESEvent, SuppressionReason, utcnow
from .suppressions import suppress

EVENT_TYPES = ("Bounce", "Complaint", "Delivery")
MESSAGE_ID = re.compile(r"<formrelay\.(?:\d+|account)\.(\d+)@")
# SES's own thresholds (the account is reviewed above the first, may be paused above the
# second): bounce rate 5% / 10%, complaint rate 0.1% / 0.5%.
BOUNCE_WARN, BOUNCE_RISK = 0.05, 0.10
COMPLAINT_WARN, COMPLAINT_RISK = 0.001, 0.005
RATE_WINDOW = timedelta(days=30)


class BadEvent(ValueError):
    """The notification's Message is not an SES event formrelay understands."""


def record_notification(session: Session, sns_message_id: str, text: str) -> list[SESEvent]:
    """Record the SES event in an SNS notification's Message, one row per recipient, and
    suppress what it calls for. Events of other types (Send, Open...) record nothing.
    Raises BadEvent for a Message that is not an SES event."""
    try:
        event = json.loads(text)
    except ValueError:
        raise BadEvent("the notification's Message is not JSON") from None
    if not isinstance(event, dict):
        raise BadEvent("the notification's Message is not a JSON object")
    kind = event.get("eventType") or event.get("notificationType")
    if kind not in EVENT_TYPES:
        return []
    mail = event.get("mail") or {}
    delivery = _delivery(session, mail)
    form_id = delivery.submission.form_id if delivery and delivery.submission else None
    if delivery is None:  # deleted since (or its submission): the form's tag may still say
        form_id = _form_id(session, mail)
    common = {
        "sns_message_id": sns_message_id,
        "event_type": kind,
        "ses_message_id": _text(mail.get("messageId"), 255),
        "delivery_id": delivery.id if delivery else None,
        "form_id": form_id,
    }
    rows: list[SESEvent] = []
    if kind == "Bounce":
        bounce = _part(event, "bounce")
        bounce_type = _text(bounce.get("bounceType"), 32)
        for r in _recipients(bounce, "bouncedRecipients"):
            detail = _text(r.get("diagnosticCode") or r.get("status"), 2000)
            rows.append(
                SESEvent(
                    **common,
                    bounce_type=bounce_type,
                    sub_type=_text(bounce.get("bounceSubType"), 64),
                    address=r["emailAddress"],
                    detail=detail,
                    occurred_at=_when(bounce.get("timestamp")),
                )
            )
            if bounce_type == "Permanent":
                suppress(
                    session,
                    r["emailAddress"],
                    reason=SuppressionReason.BOUNCE,
                    source="ses",
                    detail=detail,
                )
    elif kind == "Complaint":
        complaint = _part(event, "complaint")
        feedback = _text(complaint.get("complaintFeedbackType"), 64)
        for r in _recipients(complaint, "complainedRecipients"):
            rows.append(
                SESEvent(
                    **common,
                    sub_type=feedback or _text(complaint.get("complaintSubType"), 64),
                    address=r["emailAddress"],
                    occurred_at=_when(complaint.get("timestamp")),
                )
            )
            suppress(
                session,
                r["emailAddress"],
                reason=SuppressionReason.COMPLAINT,
                source="ses",
                detail=f"feedback type {feedback}" if feedback else None,
            )
    else:
        delivered = _part(event, "delivery")
        for address in delivered.get("recipients") or []:
            if isinstance(address, str):
                rows.append(
                    SESEvent(
                        **common,
                        address=address[:320],
                        detail=_text(delivered.get("smtpResponse"), 2000),
                        occurred_at=_when(delivered.get("timestamp")),
                    )
                )
    session.add_all(rows)
    session.flush()
    return rows


def _delivery(session: Session, mail: Mapping[str, Any]) -> Delivery | None:
    tags = mail.get("tags") or {}
    candidates = tags.get("formrelay-delivery") or []
    headers = mail.get("commonHeaders") or {}
    found = MESSAGE_ID.search(str(headers.get("messageId") or ""))
    if found:
        candidates = [*candidates, found.group(1)]
    for value in candidates:
        if str(value).isdigit():
            delivery = session.get(Delivery, int(value))
            if delivery is not None:
                return delivery
    return None


def _form_id(session: Session, mail: Mapping[str, Any]) -> int | None:
    for value in (mail.get("tags") or {}).get("formrelay-form") or []:
        if str(value).isdigit() and session.get(Form, int(value)) is not None:
            return int(value)
    return None


def _part(event: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    part = event.get(name)
    if not isinstance(part, dict):
        raise BadEvent(f"the event has no {name} object")
    return part


def _recipients(part: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = [
        r
        for r in part.get(key) or []
        if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)
    ]
    if not found:
        raise BadEvent(f"the event lists no {key}")
    return found


def _text(value: object, limit: int) -> str | None:
    return str(value)[:limit] if value is not None else None


def _when(value: object) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return utcnow()
    return moment if moment.tzinfo else utcnow()


def events_by_delivery(session: Session, delivery_ids: Sequence[int]) -> dict[int, list[SESEvent]]:
    """What SES reported about these deliveries, oldest first, by delivery id."""
    found: dict[int, list[SESEvent]] = {}
    if not delivery_ids:
        return found
    for event in session.scalars(
        select(SESEvent)
        .where(SESEvent.delivery_id.in_(list(delivery_ids)))
        .order_by(SESEvent.occurred_at, SESEvent.id)
    ):
        found.setdefault(int(event.delivery_id or 0), []).append(event)
    return found


def describe_event(event: SESEvent) -> str:
    """One line for the delivery log: what happened to which recipient."""
    if event.event_type == "Delivery":
        return f"delivered to {event.address}"
    if event.event_type == "Complaint":
        return f"{event.address} complained ({event.sub_type or 'marked as spam'})"
    kind = (event.bounce_type or "").lower() or "a"
    detail = f": {event.detail}" if event.detail else ""
    return f"{kind} bounce from {event.address}{detail}"


# -- rates ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rate:
    name: str  # "bounce" or "complaint"
    events: int
    sent: int
    warn: float
    risk: float

    @property
    def value(self) -> float:
        return self.events / self.sent if self.sent else 0.0

    @property
    def level(self) -> str:
        """ "ok", "warning" (SES reviews the account) or "at risk" (SES may pause it)."""
        if self.value >= self.risk:
            return "at risk"
        if self.value >= self.warn:
            return "warning"
        return "ok"

    def describe(self) -> str:
        return (
            f"{self.name} rate {self.value:.2%} ({self.events} of {self.sent} messages sent "
            f"in {RATE_WINDOW.days} days): {self.level} "
            f"(SES warns at {self.warn:.1%}, at risk from {self.risk:.1%})"
        )


def rates(session: Session, *, now: datetime) -> Sequence[Rate]:
    """Permanent bounces and complaints per message sent through SES (with a provider id)
    over the last RATE_WINDOW: what SES's own reputation dashboard measures, as formrelay
    has seen it."""
    since = now - RATE_WINDOW
    sent = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at >= since,
            Delivery.provider_message_id.is_not(None),
            # SES's own ids; SMTP and the console record the <Message-ID> (an account
            # that moved to SES must not have its old SMTP mail dilute the rates).
            Delivery.provider_message_id.not_like("<%"),
        )
    )

    def messages_with(*conditions: Any) -> int:
        return int(
            session.scalar(
                select(func.count(func.distinct(SESEvent.ses_message_id))).where(
                    SESEvent.occurred_at >= since, *conditions
                )
            )
            or 0
        )

    bounced = messages_with(SESEvent.event_type == "Bounce", SESEvent.bounce_type == "Permanent")
    complained = messages_with(SESEvent.event_type == "Complaint")
    return (
        Rate("bounce", bounced, int(sent or 0), BOUNCE_WARN, BOUNCE_RISK),
        Rate("complaint", complained, int(sent or 0), COMPLAINT_WARN, COMPLAINT_RISK),
    )
