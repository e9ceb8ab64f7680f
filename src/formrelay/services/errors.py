"""Domain errors. Only formrelay.web.errors maps them to HTTP."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with a submission, in Formspree's shape (code, field, message)."""

    code: str
    message: str
    field: str | None = None


class DomainError(Exception):
    """Base of the errors a user can cause; `message` is one sentence fit to show them."""

    code = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def errors(self) -> list[FieldError]:
        return [FieldError(self.code, self.message)]


class FormNotFound(DomainError):
    code = "FORM_NOT_FOUND"

    def __init__(self, message: str = "There is no form at this address.") -> None:
        super().__init__(message)


class FormDisabled(DomainError):
    code = "INACTIVE"

    def __init__(self, message: str = "This form has been disabled by its owner.") -> None:
        super().__init__(message)


class SubmissionRejected(DomainError):
    """The submission cannot be accepted as sent; nothing was stored."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self._errors = [FieldError(code, message, field)]

    @classmethod
    def from_errors(cls, errors: list[FieldError]) -> SubmissionRejected:
        first = errors[0]
        exc = cls(
            first.code,
            first.message
            if len(errors) == 1
            else f"{len(errors)} fields are invalid: {first.message}",
            first.field,
        )
        exc._errors = list(errors)
        return exc

    @property
    def errors(self) -> list[FieldError]:
        return self._errors


class NotFound(DomainError):
    """A named object (user, form) does not exist."""

    code = "NOT_FOUND"


class Conflict(DomainError):
    """The object exists already."""

    code = "CONFLICT"


class InvalidInput(DomainError):
    """A value given to a command is not acceptable."""

    code = "INVALID"
