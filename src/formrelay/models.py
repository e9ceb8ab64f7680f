"""Database models: data and invariants only."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import Base


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use formrelay.models.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_form_key() -> str:
    """An unguessable, URL-safe public key (96 random bits, less the leading "-" that would
    make `formrelay form show KEY` read it as an option)."""
    while True:
        key = secrets.token_urlsafe(12)
        if not key.startswith("-"):
            return key


# A form's upload limits until its owner changes them.
DEFAULT_MAX_FILE_MB = 10
DEFAULT_MAX_TOTAL_MB = 25
DEFAULT_MAX_FILES = 5
DEFAULT_ALLOWED_TYPES = (
    "pdf,txt,csv,rtf,doc,docx,odt,xls,xlsx,ods,ppt,pptx,odp,jpg,jpeg,png,gif,webp,heic,zip"
)

JSONType = JSON().with_variant(JSONB(), "postgresql")

intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
# The largest id a row can have: the ids are INTEGER, 32-bit on PostgreSQL. A query naming
# a larger one fails instead of finding nothing (SQLite's driver past 64 bits, PostgreSQL's
# "integer out of range" past 32), so no id past this reaches one.
MAX_ID = 2**31 - 1
timestamp = Annotated[datetime, mapped_column(UTCDateTime, default=utcnow, nullable=False)]
email_str = Annotated[str, mapped_column(String(320))]


class Role(Base):
    __tablename__ = "roles"

    ADMIN = "admin"
    MEMBER = "member"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(32), unique=True)

    users: Mapped[list[User]] = relationship(back_populates="role")


class User(Base):
    __tablename__ = "users"

    id: Mapped[intpk]
    email: Mapped[email_str] = mapped_column(unique=True)
    # Set when the dashboard's log-in arrives; CLI-made users have none yet.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"))
    created_at: Mapped[timestamp]
    # Set when the owner follows the confirmation link (or a sign-in link, which proves it too).
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A new address waits here until the link sent to it is followed.
    pending_email: Mapped[str | None] = mapped_column(String(320))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # IANA zone the dashboard shows times in.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # Part of every session's user id and every token: raising it (a password change) ends
    # the other sessions and kills the tokens issued before.
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    role: Mapped[Role] = relationship(back_populates="users", lazy="joined")
    forms: Mapped[list[Form]] = relationship(back_populates="owner")

    @property
    def is_admin(self) -> bool:
        return self.role.name == Role.ADMIN

    # What Flask-Login asks of a user (its UserMixin, without importing Flask here).
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return not self.disabled

    # The sign-in this object was loaded for or is being signed in with (the raw token, which
    # only the browser's cookies hold): set by web/auth.py, never stored on this row.
    sign_in_token: str = ""

    def get_id(self) -> str:
        """The id the session and "Remember me" cookies carry: with the session version, so
        that a password change (which raises it) ends every session begun before, and with
        the sign-in, so that logging out (which deletes it) ends copies of the cookies."""
        return f"{self.id}:{self.session_version}:{self.sign_in_token}"


class SignIn(Base):
    """One browser signed in to one account, for as long as the row lives (web/auth.py)."""

    __tablename__ = "sign_ins"

    id: Mapped[intpk]
    # SHA-256 of the token the cookies carry: a copy of the database opens no browser's session.
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    remembered: Mapped[bool] = mapped_column(Boolean, default=False)
    user_agent: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[timestamp]
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    user: Mapped[User] = relationship(lazy="joined")


class Form(Base):
    __tablename__ = "forms"

    id: Mapped[intpk]
    key: Mapped[str] = mapped_column(String(32), unique=True, default=new_form_key)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    redirect_url: Mapped[str | None] = mapped_column(String(2000))
    subject: Mapped[str | None] = mapped_column(String(255))
    # Keep submissions, send nothing.
    store_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[timestamp]
    # File uploads: off unless the owner turns them on (docs/uploads.md). The limits live on
    # the row so that an upload reads its form's policy in the one query it makes anyway.
    files_enabled: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    max_file_mb: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_MAX_FILE_MB, server_default=text(str(DEFAULT_MAX_FILE_MB))
    )
    max_total_mb: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_MAX_TOTAL_MB, server_default=text(str(DEFAULT_MAX_TOTAL_MB))
    )
    max_files: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_MAX_FILES, server_default=text(str(DEFAULT_MAX_FILES))
    )
    # Extensions, comma-separated, lower case, without dots; "*" takes any extension (the
    # content is still sniffed, and executables, scripts and HTML still need their own).
    allowed_types: Mapped[str] = mapped_column(
        String(1000), default=DEFAULT_ALLOWED_TYPES, server_default=DEFAULT_ALLOWED_TYPES
    )
    # Days a submission is kept; None: FORMRELAY_RETENTION_DAYS decides (0 there: for ever).
    retention_days: Mapped[int | None] = mapped_column(Integer)

    # -- spam and abuse (services/spam.py reads these through its per-process cache) --
    # Hosts (exact, or "*.example.com") the form may be posted from; empty: any.
    allowed_domains: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # With allowed domains: whether a request with neither Origin nor Referer is accepted.
    allow_headerless: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    # Flask-Limiter's notation ("5/minute;100/day") per client address; None: the default.
    rate_limit: Mapped[str | None] = mapped_column(String(200))
    # turnstile, hcaptcha, recaptcha-v2, recaptcha-v3; None: no CAPTCHA.
    captcha_provider: Mapped[str | None] = mapped_column(String(16))
    captcha_secret: Mapped[str | None] = mapped_column(String(255))
    captcha_threshold: Mapped[float] = mapped_column(Float, default=0.5, server_default="0.5")
    captcha_action: Mapped[str | None] = mapped_column(String(100))
    # The provider unreachable: store as suspected spam (open) or answer 503 (closed).
    captcha_fail_open: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=text("true")
    )
    # _cc mails addresses the submitter chooses: only where the owner says so.
    allow_cc: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    honeypot: Mapped[str] = mapped_column(String(64), default="_gotcha", server_default="_gotcha")
    # Content rules: a hit stores the submission as suspected spam with its reason.
    max_links: Mapped[int | None] = mapped_column(Integer)
    blocked_words: Mapped[list[str]] = mapped_column(JSONType, default=list)
    blocked_senders: Mapped[list[str]] = mapped_column(JSONType, default=list)
    blocked_addresses: Mapped[list[str]] = mapped_column(JSONType, default=list)
    min_seconds: Mapped[int | None] = mapped_column(Integer)
    # Whether Akismet (when AKISMET_API_KEY is set) judges this form's submissions.
    akismet: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # Notifications an hour at most; None: FORMRELAY_NOTIFY_LIMIT_PER_FORM.
    notify_limit: Mapped[int | None] = mapped_column(Integer)

    owner: Mapped[User] = relationship(back_populates="forms")
    recipients: Mapped[list[Recipient]] = relationship(
        back_populates="form", cascade="all, delete-orphan", order_by="Recipient.id"
    )


class Recipient(Base):
    """An address that receives a form's notifications once it is verified."""

    __tablename__ = "recipients"
    __table_args__ = (UniqueConstraint("form_id", "email"),)

    id: Mapped[intpk]
    form_id: Mapped[int] = mapped_column(ForeignKey("forms.id", ondelete="CASCADE"))
    email: Mapped[email_str]
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The dashboard mails a link carrying this token; CLI-added recipients are verified at once.
    verification_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[timestamp]

    form: Mapped[Form] = relationship(back_populates="recipients")


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        # The dashboard lists a form's submissions newest first, inbox and spam apart.
        Index("ix_submissions_form_spam_created", "form_id", "is_spam", "created_at"),
        # Every form's together (an admin's "All submissions", its export), newest first.
        Index("ix_submissions_spam_created", "is_spam", "created_at", "id"),
    )

    id: Mapped[intpk]
    form_id: Mapped[int] = mapped_column(ForeignKey("forms.id", ondelete="CASCADE"))
    created_at: Mapped[timestamp]
    # [[name, value], ...] in submitted order; a repeated name appears once per value.
    fields: Mapped[list[list[str]]] = mapped_column(JSONType)
    reply_to: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(255))
    cc: Mapped[list[str]] = mapped_column(JSONType, default=list)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    referrer: Mapped[str | None] = mapped_column(String(2000))
    origin: Mapped[str | None] = mapped_column(String(512))
    is_spam: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    spam_reason: Mapped[str | None] = mapped_column(String(200))

    form: Mapped[Form] = relationship()
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="submission", cascade="all, delete-orphan", order_by="Delivery.id"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="submission",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Attachment.id",
    )

    def values(self) -> dict[str, list[str]]:
        """Field values grouped by name, names in order of first appearance."""
        grouped: dict[str, list[str]] = {}
        for name, value in self.fields:
            grouped.setdefault(name, []).append(value)
        return grouped


class Attachment(Base):
    """A file that came with a submission: stored under a random key, never its own name.

    The stored object outlives its row only between a storage write and the commit that
    records it (a crash there): `formrelay sweep` removes such objects.
    """

    __tablename__ = "attachments"

    id: Mapped[intpk]
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    field: Mapped[str] = mapped_column(String(200))
    # Sanitised for display and download: no path, no control characters, at most 200.
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[timestamp]

    submission: Mapped[Submission] = relationship(back_populates="attachments")


class SubmissionCount(Base):
    """How many submissions a form received on one UTC day, inbox or spam: the rollup the
    forms list reads instead of counting a busy form's rows.

    Kept exact by database triggers (migration 0005) on every insert, delete (a form's
    cascade too) and move between inbox and spam, in the transaction that made the change;
    no Python writes it.
    """

    __tablename__ = "submission_counts"
    __table_args__ = {"sqlite_with_rowid": False}

    form_id: Mapped[int] = mapped_column(
        ForeignKey("forms.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_spam: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class FormField(Base):
    """A field name a form has received, with where it was first seen: the CSV export's
    columns, read from here rather than from a pass over every submission.

    Written with the submissions that bring a new name (services.field_names), in their
    transaction; kept when those submissions are deleted (a column can stay empty).
    """

    __tablename__ = "form_fields"
    __table_args__ = {"sqlite_with_rowid": False}

    form_id: Mapped[int] = mapped_column(
        ForeignKey("forms.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    # The first submission's id times FIELD_SLOTS plus the field's index in it: sorting by
    # it gives the order in which the names first arrived.
    position: Mapped[int] = mapped_column(BigInteger)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due at next_attempt_at
    SENDING = "sending"  # claimed by a worker until lease_expires_at
    SENT = "sent"
    FAILED = "failed"  # the last attempt failed; another is due at next_attempt_at
    DEAD = "dead"  # given up: permanent failure or attempts exhausted


class Delivery(Base):
    """One message to deliver for a submission: the outbox row a worker claims."""

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed', 'dead')", name="delivery_status"
        ),
        # Workers claim due rows: (status, next_attempt_at) for pending/failed,
        # (status, lease_expires_at) for leases left behind by a killed worker. The form
        # makes the first one cover the forms list's failed and dead counts per form.
        Index("ix_deliveries_due", "status", "next_attempt_at", "form_id"),
        Index("ix_deliveries_lease", "status", "lease_expires_at"),
    )

    id: Mapped[intpk]
    # None for the dashboard's own mail (confirmations, resets, invitations), which carries
    # its finished message in `message` instead.
    submission_id: Mapped[int | None] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    # The submission's form, copied when the delivery is made (a submission never moves):
    # counting a form's failed and dead deliveries then reads no submission. No foreign
    # key: the submission's cascade removes the row with its form. None with no submission.
    form_id: Mapped[int | None] = mapped_column(Integer)
    # {"subject": ..., "text": ..., "html": ...} for the dashboard's own mail.
    message: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    channel: Mapped[str] = mapped_column(String(16), default="email")
    target: Mapped[str] = mapped_column(String(2000))
    # The submission's _cc addresses ride on its first delivery only, so each gets one copy.
    cc: Mapped[list[str]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The worker holding the lease (WorkerHeartbeat.id): a row whose worker stopped beating
    # is reclaimed at once, without waiting for the lease to run out.
    leased_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp] = mapped_column(onupdate=utcnow)

    submission: Mapped[Submission | None] = relationship(back_populates="deliveries")

    def __repr__(self) -> str:
        return f"<Delivery {self.id} {self.channel}:{self.target} {self.status}>"


class WorkerHeartbeat(Base):
    """A running delivery worker: registered at start, beating every few seconds, removed
    when it stops cleanly. A killed worker's row stays behind with its last beat."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsedToken(Base):
    """A signed link that has been followed: each one works once."""

    __tablename__ = "used_tokens"

    # sha256 of the token, hex.
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[timestamp]


class SuppressionReason(enum.StrEnum):
    BOUNCE = "bounce"  # a permanent bounce: the address does not exist or never accepts
    COMPLAINT = "complaint"  # the recipient marked a message as spam
    MANUAL = "manual"  # an admin or `formrelay suppress add` (an SMTP user's bounces)


class Suppression(Base):
    """An address formrelay sends nothing to any more: its deliveries end dead at once."""

    __tablename__ = "suppressions"

    id: Mapped[intpk]
    # Lower case: mailbox names are case-insensitive in practice, and SES reports them so.
    address: Mapped[email_str] = mapped_column(unique=True)
    reason: Mapped[str] = mapped_column(String(16))
    # Where it came from: "ses" (an SNS event), "cli", "admin".
    source: Mapped[str] = mapped_column(String(16))
    # The bounce's diagnostic or the complaint's feedback type, for whoever removes it.
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[timestamp]


class SESEvent(Base):
    """One recipient's Bounce, Complaint or Delivery as SES reported it through SNS."""

    __tablename__ = "ses_events"
    __table_args__ = (Index("ix_ses_events_type_created", "event_type", "created_at"),)

    id: Mapped[intpk]
    # The SNS notification that carried it (one may report several recipients).
    sns_message_id: Mapped[str] = mapped_column(String(100), index=True)
    event_type: Mapped[str] = mapped_column(String(32))  # Bounce, Complaint, Delivery
    bounce_type: Mapped[str | None] = mapped_column(String(32))  # Permanent, Transient, ...
    sub_type: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[email_str]
    detail: Mapped[str | None] = mapped_column(Text)
    ses_message_id: Mapped[str | None] = mapped_column(String(255))
    # Found through the message's tags (or its Message-ID); None for mail formrelay did not
    # send or whose delivery was deleted since.
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    form_id: Mapped[int | None] = mapped_column(ForeignKey("forms.id", ondelete="SET NULL"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[timestamp]


class SNSMessage(Base):
    """An SNS message already handled: a retry or a replay is answered without acting twice."""

    __tablename__ = "sns_messages"
    # Pruned once older than any message /hooks/ses still accepts (services.sns.MAX_AGE).
    __table_args__ = (Index("ix_sns_messages_received_at", "received_at"),)

    message_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_type: Mapped[str] = mapped_column(String(40))
    topic_arn: Mapped[str] = mapped_column(String(300))
    received_at: Mapped[timestamp]


class SendRate(Base):
    """A send-rate bucket shared by every worker process: the next free sending slot.

    A worker reserves slots (one per recipient) by moving `next_slot` forward in one
    statement, then waits for its slot; all workers on all machines together stay at
    `rate` per second.
    """

    __tablename__ = "send_rates"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Seconds since the epoch (wall clock, comparable across machines).
    next_slot: Mapped[float] = mapped_column(Float, default=0.0)
    rate: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[timestamp] = mapped_column(onupdate=utcnow)


def all_models() -> list[type[Any]]:
    return [
        Role,
        User,
        Form,
        Recipient,
        Submission,
        Attachment,
        SubmissionCount,
        Delivery,
        WorkerHeartbeat,
        UsedToken,
        Suppression,
        SESEvent,
        SNSMessage,
        SendRate,
    ]
