"""The suppression list: addresses formrelay sends nothing to any more.

A permanent bounce or a complaint reported by SES (web/hooks.py) puts an address here, and
so does an admin or `formrelay suppress add` (SMTP users pointing their bounces at it).
From then on a delivery to the address ends dead, "suppressed", without a send: the ones
waiting when it is added at once, later ones when a worker claims them. A suppressed Cc
address is left out of the message. Removing an address lets mail reach it again; the
deliveries already dead stay so (retry them from the submission's page).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryStatus, Suppression, SuppressionReason, User, utcnow
from . import permissions
from .addresses import normalize_email
from .errors import NotFound

REASONS = tuple(str(r) for r in SuppressionReason)


def canonical(address: str) -> str:
    """The form addresses are kept and compared in: trimmed, lower case, the domain in
    its ASCII (IDNA) form, as SES reports it."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not domain.isascii():
        with contextlib.suppress(UnicodeError):  # kept as written: it cannot match SES's
            domain = domain.encode("idna").decode("ascii")
    return f"{local}{at}{domain}"


def suppressed_reason(s: Suppression) -> str:
    """What a delivery to a suppressed address records as its last error."""
    why = {
        SuppressionReason.BOUNCE: "it bounced permanently",
        SuppressionReason.COMPLAINT: "its recipient complained (marked a message as spam)",
        SuppressionReason.MANUAL: "it was added by hand",
    }.get(SuppressionReason(s.reason), s.reason)
    return f"suppressed: {s.address} is on the suppression list ({why})"


def suppress(
    session: Session,
    address: str,
    *,
    reason: str,
    source: str,
    detail: str | None = None,
    actor: User | None = None,
) -> tuple[Suppression, int]:
    """Put `address` on the list (or find its entry, kept as first recorded) and end the
    deliveries waiting for it; returns the entry and how many deliveries ended.

    `actor` None is the operator (the CLI, SES's events); a user must be an admin.
    Raises NotFound for a non-admin, SubmissionRejected
    (TYPE_EMAIL) for a malformed address."""
    if actor is not None:
        permissions.require_admin(actor)
    if reason not in REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    normal = canonical(normalize_email(address, "address"))  # SubmissionRejected if bad
    found = session.scalar(select(Suppression).where(Suppression.address == normal))
    if found is None:
        found = Suppression(address=normal, reason=reason, source=source, detail=detail)
        session.add(found)
        session.flush()
    return found, end_waiting_deliveries(session, found)


def end_waiting_deliveries(session: Session, s: Suppression) -> int:
    """Mark the deliveries to `s.address` that wait for a send dead; returns how many."""
    S = DeliveryStatus
    result = session.connection().execute(
        update(Delivery)
        .where(
            func.lower(Delivery.target) == s.address,
            Delivery.status.in_([S.PENDING, S.FAILED]),
        )
        .values(status=S.DEAD, last_error=suppressed_reason(s), updated_at=utcnow())
    )
    return int(result.rowcount or 0)


def unsuppress(session: Session, address: str, *, actor: User | None = None) -> Suppression:
    """Take `address` off the list. Raises NotFound when it is not on it (or for an actor
    who is not an admin)."""
    if actor is not None:
        permissions.require_admin(actor)
    found = session.scalar(select(Suppression).where(Suppression.address == canonical(address)))
    if found is None:
        raise NotFound(f"{address} is not on the suppression list.")
    session.delete(found)
    session.flush()
    return found


def load_suppression(session: Session, actor: User, suppression_id: int) -> Suppression:
    """The entry with this id. Raises NotFound (also for an actor who is not an admin)."""
    permissions.require_admin(actor)
    found = session.get(Suppression, suppression_id)
    if found is None:
        raise NotFound("There is no such suppressed address.")
    return found


def list_suppressions(
    session: Session, *, actor: User | None = None, limit: int | None = None
) -> Sequence[Suppression]:
    """The list, newest first."""
    if actor is not None:
        permissions.require_admin(actor)
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return session.scalars(query).all()


def count_suppressions(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Suppression)) or 0)


def suppressed_among(session: Session, addresses: Iterable[str]) -> dict[str, Suppression]:
    """The entries of those of `addresses` that are suppressed, by canonical address."""
    wanted = {canonical(a) for a in addresses if a}
    if not wanted:
        return {}
    rows = session.scalars(select(Suppression).where(Suppression.address.in_(sorted(wanted))))
    return {s.address: s for s in rows}
