"""What becomes of a delivery after an attempt: sent, failed (retried later) or dead."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, update
from sqlalchemy.orm import Session

from ..db import DATABASE_AWAY, begin_write
from ..delivery import DeliveryDeferred, DeliveryFailed
from ..settings import Settings
from .claims import DELIVERIES, Claim, D, S

log = logging.getLogger("formrelay.worker")
# Recording stops trying this long before another worker may take the row over.
LEASE_MARGIN = 1.0

# Every outcome with one statement, built once. Only the current claim records: a worker
# whose row was taken over must not overwrite the row's new holder.
_RECORD = (
    update(DELIVERIES)
    .where(
        D.id == bindparam("b_id"),
        D.status == S.SENDING,
        D.leased_by == bindparam("b_worker"),
        D.attempts == bindparam("b_attempts"),
    )
    .values(
        status=bindparam("b_status"),
        sent_at=bindparam("b_sent_at"),
        provider_message_id=bindparam("b_provider_id"),
        last_error=bindparam("b_error"),
        # A deferral (SES's rate or quota) hands its attempt back: it never counts.
        attempts=D.attempts - bindparam("b_refund"),
        # A new time only for a retry; sent and dead rows keep theirs.
        next_attempt_at=func.coalesce(
            bindparam("b_next", type_=D.next_attempt_at.type), D.next_attempt_at
        ),
        lease_expires_at=None,
        leased_by=None,
        updated_at=bindparam("b_now"),
    )
)


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: str
    error: str | None = None


def retry_delay(
    attempts: int, settings: Settings, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before attempt `attempts + 1`: exponential, capped, with +-20% jitter.

    The jitter never takes a delay past FORMRELAY_RETRY_MAX_DELAY_SECONDS: the maximum is one.
    """
    # The exponent stops growing long before 2**n overflows a float (FORMRELAY_MAX_ATTEMPTS
    # may be large); the cap has been reached by then anyway.
    base = settings.retry_base_seconds * 2.0 ** min(max(attempts - 1, 0), 64)
    cap = settings.retry_max_delay_seconds
    return min(min(base, cap) * (0.8 + 0.4 * rand()), cap)


def decide(
    claim: Claim,
    error: DeliveryFailed | None,
    provider_id: str | None,
    settings: Settings,
    now: datetime,
) -> dict[str, object]:
    """The row's new state after the attempt, as the parameters of the record statement."""
    params: dict[str, object] = {
        "b_id": claim.delivery_id,
        "b_worker": claim.worker_id,
        "b_attempts": claim.attempts,
        "b_now": now,
        "b_sent_at": None,
        "b_provider_id": None,
        "b_error": None,
        "b_next": None,
        "b_refund": 0,
    }
    if isinstance(error, DeliveryDeferred):
        params.update(
            b_status=S.FAILED,
            b_next=now + timedelta(seconds=error.retry_after),
            b_error=str(error)[:4000],
            b_refund=1,
        )
    elif error is None:
        params.update(b_status=S.SENT, b_sent_at=now, b_provider_id=provider_id)
    elif error.retryable and claim.attempts < settings.max_attempts:
        delay = retry_delay(claim.attempts, settings)
        params.update(
            b_status=S.FAILED, b_next=now + timedelta(seconds=delay), b_error=str(error)[:4000]
        )
    else:
        reason = (
            str(error)
            if not error.retryable
            else f"gave up after {claim.attempts} attempts: {error}"
        )
        params.update(b_status=S.DEAD, b_error=reason[:4000])
    return params


def record(session: Session, params: dict[str, object]) -> Outcome:
    """Write one decided outcome and commit."""
    begin_write(session)
    result = session.connection().execute(_RECORD, params)
    session.commit()
    delivery_id, status = int(str(params["b_id"])), str(params["b_status"])
    error = params["b_error"]
    if result.rowcount != 1:
        log.warning("delivery %s: lease lost before recording %s", delivery_id, status)
    log.info("delivery %s: %s%s", delivery_id, status, f" ({error})" if error else "")
    return Outcome(delivery_id, status, str(error) if error is not None else None)


def record_while_leased(
    session: Session,
    params: dict[str, object],
    *,
    seconds_left: float,
    stop: threading.Event,
) -> Outcome:
    """Record an outcome, trying again while the database is away and the claim is safe.

    The message has been handed over (or refused) by now: an outcome left unrecorded means
    the row is sent again once another worker takes it over, a duplicate for the recipient.
    Raises the database's error when `seconds_left` (less a margin) runs out, or at once when
    the worker is asked to stop (SIGTERM): it then exits rather than outstay the platform's
    grace period, and the row is handed on as after a kill.
    """
    deadline = time.monotonic() + seconds_left - LEASE_MARGIN
    pause = 0.1
    while True:
        try:
            return record(session, params)
        except DATABASE_AWAY as exc:
            session.rollback()
            if stop.is_set() or time.monotonic() + pause > deadline:
                raise
            log.warning(
                "delivery %s: recording its outcome failed, trying again in %.1f s: %s",
                params["b_id"],
                pause,
                one_line(exc),
            )
            stop.wait(pause)
            pause = min(pause * 2, 5.0)


def one_line(exc: BaseException) -> str:
    """The exception's first line, for a log line (a database error runs to many)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
