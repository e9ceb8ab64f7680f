"""Apply a change the domain may refuse: commit it, or roll it back and show the user why.

A view validates its input, hands the change to `apply`, and then flashes and redirects or
renders its page again. The commit stays at the edge, in this one place, and the transaction
begins where it did before: `apply` neither opens nor ends one before the change runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, cast

from flask import flash
from flask_wtf import FlaskForm
from wtforms import Field

from ..extensions import db
from ..services.errors import Conflict, DomainError, InvalidInput

T = TypeVar("T")


class Outcome(Generic[T]):
    """What `apply` did: true with the change's `value` when it was committed, false with
    the `refused` error (and the HTTP `status` that says why) when it was rolled back."""

    __slots__ = ("_value", "refused")

    def __init__(self, value: T | None = None, refused: DomainError | None = None) -> None:
        self._value = value
        self.refused = refused

    def __bool__(self) -> bool:
        return self.refused is None

    @property
    def value(self) -> T:
        """The change's result; only a committed change has one."""
        if self.refused is not None:
            raise ValueError("a refused change has no value") from self.refused
        return cast(T, self._value)

    @property
    def status(self) -> int:
        """409 when the refusal was a conflict with what exists, else 400."""
        return 409 if isinstance(self.refused, Conflict) else 400


def apply(
    change: Callable[[], T],
    show: FlaskForm | Field | None,
    *,
    refuse: type[DomainError] | tuple[type[DomainError], ...] = InvalidInput,
) -> Outcome[T]:
    """Run `change` and commit the session. When it raises one of `refuse`, roll back and show
    the error's message: on `show`'s own errors when it is a form, as the only error of the
    field when it is a field, and as a flashed error when it is None. Any other error is
    raised as it is, for web/errors.py to answer, with nothing committed."""
    try:
        value = change()
    except refuse as exc:
        db.session.rollback()
        if isinstance(show, FlaskForm):
            show.form_errors.append(exc.message)
        elif show is not None:
            show.errors = [exc.message]
        else:
            flash(exc.message, "error")
        return Outcome(refused=exc)
    db.session.commit()
    return Outcome(value)
