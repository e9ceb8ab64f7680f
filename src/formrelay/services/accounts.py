"""Users and roles; registering, confirming, resetting and inviting (mail through the outbox).

Nothing here commits or reads a request: the view or command commits once, and the worker
sends the mail queued here after that commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import available_timezones

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..models import Delivery, DeliveryStatus, Form, Role, User, utcnow
from . import forms, passwords, permissions, sign_ins, tokens
from .addresses import normalize_email
from .errors import Conflict, InvalidInput
from .outbox import queue_mail

if TYPE_CHECKING:  # formrelay.settings imports flask, which the domain never does
    from ..settings import Settings

# The administrator `formrelay serve` creates on first start when FORMRELAY_ADMIN is unset.
# Not an address mail can reach, which is why the sign-in link is printed rather than mailed.
DEV_ADMIN_EMAIL = "admin@localhost"


def get_role(session: Session, name: str) -> Role:
    """The role with this name, created on first use."""
    role = session.scalar(select(Role).where(Role.name == name))
    if role is None:
        role = Role(name=name)
        session.add(role)
        session.flush()
    return role


def create_user(session: Session, email: str, *, admin: bool = False) -> User:
    """Add a user. Raises InvalidInput for a bad address, Conflict if it exists."""
    address = _address(email)
    if find_user(session, address) is not None:
        raise Conflict(f"A user with e-mail {address} exists already.")
    user = User(email=address, role=get_role(session, Role.ADMIN if admin else Role.MEMBER))
    session.add(user)
    session.flush()
    return user


def ensure_admin(session: Session, email: str) -> User:
    """The admin with this address: created, or given the admin role if a member has it.

    For the address the operator named as the administrator (FORMRELAY_ADMIN). Raises
    InvalidInput for a bad address.
    """
    address = _address(email)
    user = find_user(session, address)
    if user is None:
        return create_user(session, address, admin=True)
    if not user.is_admin:
        user.role = get_role(session, Role.ADMIN)
        session.flush()
    return user


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def first_admin(session: Session) -> User | None:
    return session.scalar(
        select(User).join(User.role).where(Role.name == Role.ADMIN).order_by(User.id).limit(1)
    )


def _address(email: str) -> str:
    if email.strip().lower() == DEV_ADMIN_EMAIL:  # email-validator refuses a bare "localhost"
        return DEV_ADMIN_EMAIL
    try:
        return normalize_email(email, "email").lower()
    except Exception as exc:  # SubmissionRejected speaks of a form field; say it plainly here
        raise InvalidInput(f"{email!r} is not a valid e-mail address.") from exc


# -- passwords, confirmation, time zone ------------------------------------------------------
def set_password(session: Session, user: User, password: str) -> None:
    """Give `user` a new password that meets the policy (raises InvalidInput saying what is
    wrong). Raises the session version and ends every sign-in: every browser signed in and
    every link sent before stops working."""
    passwords.check_new_password(password, email=user.email)
    user.password_hash = passwords.hash_password(password)
    user.session_version += 1
    sign_ins.end_all(session, user)
    session.flush()


def mark_confirmed(user: User) -> None:
    if user.confirmed_at is None:
        user.confirmed_at = utcnow()


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def timezone_names() -> list[str]:
    """The IANA zone names set_timezone takes, sorted (UTC among them)."""
    return sorted(_zones() | {"UTC"})


def set_timezone(session: Session, user: User, name: str) -> None:
    """Show the dashboard's times in the IANA zone `name`; raises InvalidInput for another."""
    name = name.strip()
    if name != "UTC" and name not in _zones():
        raise InvalidInput(f"{name!r} is not a time zone name such as Europe/Paris or UTC.")
    user.timezone = name
    session.flush()


# -- mail ------------------------------------------------------------------------------------
def send_confirmation(session: Session, settings: Settings, user: User) -> None:
    """Mail `user` a link that confirms their address (valid 3 days)."""
    url = tokens.issue_link(settings, tokens.CONFIRM, user, email=user.email)
    queue_mail(
        session,
        user.email,
        subject="Confirm your e-mail address",
        text=(
            "Welcome to formrelay.\n\n"
            f"Confirm that this address is yours by opening this link:\n\n{url}\n\n"
            "The link works once, for 3 days. If you did not create an account, ignore this "
            "message.\n"
        ),
    )


def register(session: Session, settings: Settings, email: str, password: str) -> User | None:
    """Create an account for `email` and mail it a confirmation link; the admin is told.

    When the address has an account already, nothing is created: its owner is mailed a note
    instead, and None returned, so that the page answers the same either way (no probing
    for who has an account). Raises InvalidInput for a bad address or a weak password.
    """
    address = _address(email)
    passwords.check_new_password(password, email=address)
    password_hash = passwords.hash_password(password)  # either way: the same time taken
    existing = find_user(session, address)
    if existing is not None:
        queue_mail(
            session,
            existing.email,
            subject="Someone tried to register with your address",
            text=(
                "Someone (perhaps you) tried to create a formrelay account with this "
                "address, which has one already. Nothing was changed.\n\n"
                "If you have forgotten your password, reset it here:\n\n"
                f"{settings.base_url}/reset\n"
            ),
        )
        return None
    user = create_user(session, address)
    user.password_hash = password_hash
    session.flush()
    send_confirmation(session, settings, user)
    if settings.admin_email and settings.admin_email != address:
        queue_mail(
            session,
            settings.admin_email,
            subject=f"New account: {address}",
            text=f"{address} created a formrelay account at {settings.base_url}.\n",
        )
    return user


def request_reset(session: Session, settings: Settings, email: str) -> None:
    """Mail the account with this address, if there is one, a reset link (valid 1 hour).

    Says nothing about whether there was one; a malformed address is simply no account."""
    user = find_user(session, email)
    if user is None or user.disabled:
        return
    url = tokens.issue_link(settings, tokens.RESET, user)
    queue_mail(
        session,
        user.email,
        subject="Reset your password",
        text=(
            "Someone (perhaps you) asked to reset the password of your formrelay account.\n\n"
            f"Choose a new password here:\n\n{url}\n\n"
            "The link works once, for 1 hour. If you did not ask, ignore this message: your "
            "password stays as it is.\n"
        ),
    )


def request_email_change(session: Session, settings: Settings, user: User, email: str) -> str:
    """Mail the new address a link that moves the account to it (valid 1 day), and tell the
    old one. Nothing changes until the link is followed. Returns the normalized address.

    When another account has the address, that address is told instead (no probing).
    Raises InvalidInput for a bad address or the account's own.
    """
    address = _address(email)
    if address == user.email:
        raise InvalidInput("That is the address the account has already.")
    if find_user(session, address) is not None:
        queue_mail(
            session,
            address,
            subject="Someone tried to move an account to your address",
            text=(
                "Someone tried to move another formrelay account to this address, which has "
                "an account already. Nothing was changed.\n"
            ),
        )
        return address
    user.pending_email = address
    session.flush()
    url = tokens.issue_link(settings, tokens.CHANGE_EMAIL, user, email=address)
    queue_mail(
        session,
        address,
        subject="Confirm your new e-mail address",
        text=(
            f"Open this link to make {address} the address of your formrelay account:\n\n"
            f"{url}\n\nThe link works once, for 1 day. Until then the account keeps "
            f"{user.email}.\n"
        ),
    )
    queue_mail(
        session,
        user.email,
        subject="Your e-mail address is about to change",
        text=(
            f"Someone signed in to your formrelay account asked to change its address to "
            f"{address}. It changes only when the link mailed there is followed.\n\n"
            "If this was not you, change your password now.\n"
        ),
    )
    return address


def apply_email_change(session: Session, claim: tokens.Claim) -> User:
    """Move the account to the address a followed change-email link names.

    Raises TokenUsed when another change was asked for since, Conflict when another account
    took the address meanwhile."""
    user = claim.user
    if claim.email is None or claim.email != user.pending_email:
        raise tokens.TokenUsed("A newer address change was asked for since this link was sent.")
    if find_user(session, claim.email) is not None:
        raise Conflict(f"Another account has {claim.email} now.")
    user.email = claim.email
    user.pending_email = None
    user.confirmed_at = utcnow()
    session.flush()
    return user


# -- sign-in links and invitations -------------------------------------------------------------
def sign_in_link(settings: Settings, user: User) -> str:
    """A one-time link (valid 24 h) to the page where `user` sets a password and is signed in."""
    return tokens.issue_link(settings, tokens.SIGN_IN, user)


def invite_user(
    session: Session, settings: Settings, inviter: User, email: str, *, admin: bool = False
) -> User:
    """Create an account without a password for `email` and mail it an invitation: a link
    (valid 7 days) to set a password, which also confirms the address.

    Raises InvalidInput for a bad address, Conflict when the address has an account.
    """
    user = create_user(session, email, admin=admin)
    url = tokens.issue_link(settings, tokens.INVITE, user)
    queue_mail(
        session,
        user.email,
        subject=f"{inviter.email} invites you to formrelay",
        text=(
            f"{inviter.email} has made you a formrelay account at {settings.base_url}.\n\n"
            f"Choose your password here:\n\n{url}\n\n"
            "The link works once, for 7 days.\n"
        ),
    )
    return user


def first_start(session: Session, settings: Settings) -> tuple[User, str] | None:
    """On a first start (no user has a password yet): the administrator FORMRELAY_ADMIN
    names (DEV_ADMIN_EMAIL when unset), created if need be, with a sign-in link to print.
    None once someone has a password. Never for the demo form's placeholder member."""
    has_password = session.scalar(select(User.id).where(User.password_hash.is_not(None)).limit(1))
    if has_password is not None:
        return None
    admin = ensure_admin(session, settings.admin_email or DEV_ADMIN_EMAIL)
    return admin, sign_in_link(settings, admin)


# -- administration: roles, disabling, deleting (an admin acting on any user) ------------------
def set_role(session: Session, actor: User, user: User, role: str) -> User:
    """Make `user` an admin or a member.

    Raises NotFound unless the actor is an admin, InvalidInput for another role name and
    Conflict when it would leave no enabled admin (the last admin cannot demote themselves).
    """
    permissions.require_admin(actor)
    if role not in (Role.ADMIN, Role.MEMBER):
        raise InvalidInput(f"A role is {Role.ADMIN} or {Role.MEMBER}, not {role!r}.")
    if role == Role.MEMBER and user.is_admin:
        _keep_an_admin(session, user, "made a member")
    user.role = get_role(session, role)
    session.flush()
    return user


def set_disabled(session: Session, actor: User, user: User, disabled: bool) -> User:
    """Disable `user` (they cannot log in and every session of theirs ends) or enable them.

    The session version is raised on disabling, so that enabling again does not bring back
    the sessions that were open. Their forms keep accepting submissions: an admin disables
    a form on its own. Raises NotFound unless the actor is an admin, Conflict when it
    would leave no enabled admin.
    """
    permissions.require_admin(actor)
    if disabled and not user.disabled:
        if user.is_admin:
            _keep_an_admin(session, user, "disabled")
        user.session_version += 1
        sign_ins.end_all(session, user)
    user.disabled = disabled
    session.flush()
    return user


@dataclass(frozen=True)
class Deleted:
    email: str
    forms: int
    submissions: int


def delete_user(session: Session, actor: User, user: User) -> Deleted:
    """Delete `user` with their forms, and those forms' submissions and deliveries, and
    the account mail to them that has not gone yet (an invitation sent by mistake).

    Raises NotFound unless the actor is an admin, Conflict when `user` is the last enabled
    admin (who therefore cannot delete themselves).
    """
    permissions.require_admin(actor)
    if user.is_admin:
        _keep_an_admin(session, user, "deleted")
    owned = session.scalars(select(Form).where(Form.owner_id == user.id)).all()
    submissions = sum(forms.delete_form(session, form) for form in owned)
    addresses = [a for a in (user.email, user.pending_email) if a]
    session.execute(
        delete(Delivery).where(
            Delivery.submission_id.is_(None),
            Delivery.target.in_(addresses),
            Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.FAILED]),
        )
    )
    deleted = Deleted(user.email, len(owned), submissions)
    sign_ins.end_all(session, user)
    session.expire(user, ["forms"])  # a list loaded earlier still holds the deleted forms
    session.delete(user)
    session.flush()
    return deleted


def _keep_an_admin(session: Session, leaving: User, change: str) -> None:
    """Raise Conflict when `leaving` is the only enabled admin."""
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .join(User.role)
        .where(Role.name == Role.ADMIN, User.disabled.is_(False), User.id != leaving.id)
    )
    if not others:
        raise Conflict(
            f"{leaving.email} is the only admin and cannot be {change}: "
            "make another user an admin first."
        )
