"""Forms and their recipients: creating, finding, changing, enabling and deleting them."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ..models import Form, Recipient, SubmissionCount, User, utcnow
from . import attachments, spam
from .addresses import normalize_email
from .errors import Conflict, FormNotFound, InvalidInput, NotFound, SubmissionRejected
from .outbox import queue_mail
from .submissions import MAX_SUBJECT, clean_subject
from .urls import http_url

MAX_NAME = 200  # Form.name
MAX_REDIRECT = 2000  # Form.redirect_url


def create_form(
    session: Session,
    owner: User,
    *,
    name: str,
    recipients: Sequence[str],
    redirect_url: str | None = None,
    subject: str | None = None,
    verified: bool = False,
) -> Form:
    """Add a form. Recipients given by an operator (the CLI) may be marked verified at once.

    Raises InvalidInput for a blank or too long name, a bad address, a redirect that is not
    http(s) or a subject that is too long.
    """
    form = Form(
        name=_name(name),
        owner=owner,
        redirect_url=_redirect(redirect_url or ""),
        subject=_subject(subject or ""),
    )
    for raw in recipients:
        _add_recipient(form, raw, verified=verified)
    session.add(form)
    session.flush()
    return form


def find_form(session: Session, key: str) -> Form:
    """The form with this key. Raises FormNotFound."""
    form = session.scalar(
        select(Form).options(selectinload(Form.recipients)).where(Form.key == key)
    )
    if form is None:
        raise FormNotFound(f"No form with key {key}.")
    return form


def list_forms(session: Session) -> Sequence[Form]:
    return session.scalars(
        select(Form).options(selectinload(Form.recipients)).order_by(Form.id)
    ).all()


@dataclass(frozen=True)
class FormChanges:
    """What to change in a form; None (or an empty list) leaves a setting as it is.

    An empty string clears the redirect or the subject. Recipients are added, then removed.
    """

    name: str | None = None
    redirect_url: str | None = None
    subject: str | None = None
    add_recipients: Sequence[str] = field(default_factory=tuple)
    remove_recipients: Sequence[str] = field(default_factory=tuple)
    store_only: bool | None = None
    files_enabled: bool | None = None
    max_file_mb: int | None = None
    max_total_mb: int | None = None
    max_files: int | None = None
    allowed_types: str | None = None
    # 0 clears the form's own retention (FORMRELAY_RETENTION_DAYS decides again).
    retention_days: int | None = None

    def __bool__(self) -> bool:
        return any(
            (
                self.name is not None,
                self.redirect_url is not None,
                self.subject is not None,
                self.store_only is not None,
                self.add_recipients,
                self.remove_recipients,
                *(getattr(self, name) is not None for name in UPLOAD_SETTINGS),
                self.retention_days is not None,
            )
        )


# The upload settings of a form, in the order they are shown and reported.
UPLOAD_SETTINGS = ("files_enabled", "max_file_mb", "max_total_mb", "max_files", "allowed_types")
MAX_MB = 10_000  # a sanity bound; FORMRELAY_MAX_UPLOAD_BODY_BYTES is the real ceiling
MAX_FILES = 100
MAX_RETENTION_DAYS = 36_500


def update_form(
    session: Session, form: Form, changes: FormChanges, *, verified: bool = False
) -> list[str]:
    """Apply `changes` to `form`; returns the names of the settings that changed, in order.

    Added recipients are marked verified when `verified` (an operator vouches for them); an
    address already there is kept as it is, unless it was unverified and `verified` is true.
    Raises InvalidInput for a bad value, for removing an address the form does not send to
    and for removing every recipient; nothing is changed then.
    """
    # Every value is checked before anything changes, so that a refusal leaves the form whole.
    name = None if changes.name is None else _name(changes.name)
    redirect = None if changes.redirect_url is None else _redirect(changes.redirect_url)
    if changes.redirect_url is not None:
        spam.check_redirect_allowed(form.allowed_domains or [], redirect)
    subject = None if changes.subject is None else _subject(changes.subject)
    uploads = _upload_changes(form, changes)
    adding = [_address(raw) for raw in changes.add_recipients]
    removing = [_address(raw).lower() for raw in changes.remove_recipients]
    current = {r.email.lower() for r in form.recipients}
    for address in removing:
        if address not in current and address not in {a.lower() for a in adding}:
            raise InvalidInput(f"{address} is not a recipient of this form.")
    if not current.union(a.lower() for a in adding).difference(removing):
        raise InvalidInput(
            "A form needs at least one recipient: add another before removing the last."
        )

    changed: list[str] = []
    if name is not None and name != form.name:
        form.name = name
        changed.append("name")
    if changes.redirect_url is not None and redirect != form.redirect_url:
        form.redirect_url = redirect
        changed.append("redirect")
    if changes.subject is not None and subject != form.subject:
        form.subject = subject
        changed.append("subject")
    if changes.store_only is not None and changes.store_only != form.store_only:
        form.store_only = changes.store_only
        changed.append("store-only")
    for name, value in uploads.items():
        if getattr(form, name) != value:
            setattr(form, name, value)
            changed.append(name.replace("_", "-"))
    if changes.retention_days is not None:
        days = _retention(changes.retention_days)
        if days != form.retention_days:
            form.retention_days = days
            changed.append("retention")
    before = [(r.email, r.verified) for r in form.recipients]
    for address in adding:
        _add_recipient(form, address, verified=verified)
    for recipient in [r for r in form.recipients if r.email.lower() in removing]:
        form.recipients.remove(recipient)
    if [(r.email, r.verified) for r in form.recipients] != before:
        changed.append("recipients")
    session.flush()
    spam.forget_policy(form.key)
    return changed


def _upload_changes(form: Form, changes: FormChanges) -> dict[str, object]:
    """The upload settings `changes` sets, checked. Raises InvalidInput."""
    values: dict[str, object] = {}
    if changes.files_enabled is not None:
        values["files_enabled"] = changes.files_enabled
    for name, label, top in (
        ("max_file_mb", "The size of one file", MAX_MB),
        ("max_total_mb", "The size of all files", MAX_MB),
        ("max_files", "The number of files", MAX_FILES),
    ):
        value = getattr(changes, name)
        if value is None:
            continue
        if not 1 <= value <= top:
            raise InvalidInput(f"{label} must be from 1 to {top}, not {value}.")
        values[name] = value
    if changes.allowed_types is not None:
        try:
            types = attachments.clean_types(changes.allowed_types)
        except ValueError as exc:
            raise InvalidInput(f"Allowed types: {exc}.") from None
        if not types:
            raise InvalidInput("Allowed types: list at least one extension, or * for any.")
        values["allowed_types"] = types
    per_file = values.get("max_file_mb", form.max_file_mb)
    total = values.get("max_total_mb", form.max_total_mb)
    assert isinstance(per_file, int) and isinstance(total, int)
    if per_file > total:
        raise InvalidInput(
            f"One file may not be larger ({per_file} MB) than all files together ({total} MB)."
        )
    return values


def _retention(days: int) -> int | None:
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise InvalidInput(f"Retention must be from 0 to {MAX_RETENTION_DAYS} days, not {days}.")
    return days or None


def set_enabled(session: Session, form: Form, enabled: bool) -> Form:
    """Enable or disable `form`: a disabled form refuses submissions (INACTIVE)."""
    form.enabled = enabled
    session.flush()
    return form


def delete_form(session: Session, form: Form) -> int:
    """Delete `form` with its recipients, submissions and their deliveries; returns how many
    submissions went with it."""
    # From the per-day rollup: counting a busy form's rows would read every one of them.
    count = session.scalar(
        select(func.sum(SubmissionCount.n)).where(SubmissionCount.form_id == form.id)
    )
    # The database deletes the submissions, their deliveries and files' rows (ON DELETE
    # CASCADE), in one statement rather than one per row loaded here; the files themselves
    # go from storage once that commits.
    attachments.forget_after_commit(session, attachments.form_storage_keys(session, form))
    session.delete(form)
    session.flush()
    return count or 0


def add_recipient(session: Session, form: Form, raw: str, *, base_url: str) -> Recipient:
    """Add an address to `form` from the dashboard: verified at once when it is the owner's
    own confirmed address, otherwise pending, with a verification link mailed to it (through
    the outbox) that must be followed before it receives anything.

    Raises InvalidInput for a bad address, Conflict for one the form has already.
    """
    address = _address(raw)
    if any(r.email.lower() == address.lower() for r in form.recipients):
        raise Conflict(f"{address} is a recipient of this form already.")
    owner = form.owner
    own = owner.confirmed_at is not None and owner.email.lower() == address.lower()
    recipient = Recipient(email=address, verified=own, verified_at=utcnow() if own else None)
    form.recipients.append(recipient)
    session.flush()
    if not own:
        send_verification(session, recipient, base_url=base_url)
    return recipient


def send_verification(session: Session, recipient: Recipient, *, base_url: str) -> str:
    """Mail `recipient` a new verification link (the one sent before stops working) and
    return the link. Raises Conflict when the address is verified already."""
    if recipient.verified:
        raise Conflict(f"{recipient.email} is verified already.")
    token = secrets.token_urlsafe(32)
    # Only the digest is stored: a copy of the database holds no working link.
    recipient.verification_token = _token_digest(token)
    link = f"{base_url}/verify/{token}"
    form = recipient.form
    queue_mail(
        session,
        recipient.email,
        subject=f"Confirm that {recipient.email} should receive submissions to {form.name}",
        text=(
            f'{form.owner.email} would like submissions to their form "{form.name}" to be\n'
            f"sent to {recipient.email}. To agree, open this link and confirm:\n\n{link}\n\n"
            "If you did not expect this, ignore this message: nothing is sent to you until\n"
            "the link is followed.\n"
        ),
    )
    session.flush()
    return link


def pending_recipient(session: Session, token: str) -> Recipient:
    """The unverified recipient a verification link names. Raises NotFound for a link that
    is unknown, used already or replaced by a newer one."""
    recipient = session.scalar(
        select(Recipient).where(Recipient.verification_token == _token_digest(token))
    )
    if recipient is None or recipient.verified:
        raise NotFound("This verification link is not valid: it was used or replaced.")
    return recipient


def verify_recipient(session: Session, token: str) -> Recipient:
    """Mark the recipient a verification link names as verified; the link dies. Raises
    NotFound (see pending_recipient)."""
    recipient = pending_recipient(session, token)
    recipient.verified, recipient.verified_at = True, utcnow()
    recipient.verification_token = None
    session.flush()
    return recipient


def remove_recipient(session: Session, form: Form, recipient_id: int) -> Recipient:
    """Remove one of `form`'s recipients. Raises NotFound for an id that is not one of them,
    InvalidInput for the last one (a form needs an address to send to)."""
    recipient = find_recipient(form, recipient_id)
    if len(form.recipients) == 1:
        raise InvalidInput(
            "A form needs at least one recipient: add another before removing the last."
        )
    form.recipients.remove(recipient)
    session.flush()
    return recipient


def find_recipient(form: Form, recipient_id: int) -> Recipient:
    """One of `form`'s recipients. Raises NotFound."""
    recipient = next((r for r in form.recipients if r.id == recipient_id), None)
    if recipient is None:
        raise NotFound("This form has no such recipient.")
    return recipient


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise InvalidInput("A form needs a name.")
    if len(name) > MAX_NAME:
        raise InvalidInput(
            f"A form's name can have at most {MAX_NAME} characters; this one has {len(name)}."
        )
    return name


def _redirect(raw: str) -> str | None:
    """The redirect URL, None when blank."""
    if not raw:
        return None
    # Kept as a browser reads it (services/urls.py): what is checked is what browsers follow.
    url = http_url(raw)
    if not url:
        raise InvalidInput(f"The redirect {raw!r} must be an http(s) URL.")
    if len(url) > MAX_REDIRECT:
        raise InvalidInput(
            f"The redirect URL can have at most {MAX_REDIRECT} characters; this one has {len(url)}."
        )
    return url


def _subject(raw: str) -> str | None:
    """The subject as notifications use it (one line), None when blank."""
    length = len(" ".join(raw.split()))
    if length > MAX_SUBJECT:  # clean_subject cuts a submission's _subject; an operator's is refused
        raise InvalidInput(
            f"A subject can have at most {MAX_SUBJECT} characters; this one has {length}."
        )
    return clean_subject(raw)


def _address(raw: str) -> str:
    try:
        return normalize_email(raw, "recipient")
    except SubmissionRejected:
        raise InvalidInput(f"{raw!r} is not a valid e-mail address.") from None


def _add_recipient(form: Form, raw: str, *, verified: bool) -> None:
    address = _address(raw)
    existing = next((r for r in form.recipients if r.email.lower() == address.lower()), None)
    if existing is None:
        form.recipients.append(
            Recipient(email=address, verified=verified, verified_at=utcnow() if verified else None)
        )
    elif verified and not existing.verified:
        existing.verified, existing.verified_at = True, utcnow()
