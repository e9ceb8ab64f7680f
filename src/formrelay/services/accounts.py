"""Users and roles."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Role, User
from .addresses import normalize_email
from .errors import Conflict, InvalidInput


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
    try:
        return normalize_email(email, "email").lower()
    except Exception as exc:  # SubmissionRejected speaks of a form field; say it plainly here
        raise InvalidInput(f"{email!r} is not a valid e-mail address.") from exc
