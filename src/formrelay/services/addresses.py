"""E-mail addresses as formrelay accepts them: from form fields, the CLI and the dashboard."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from .errors import SubmissionRejected


def normalize_email(value: str, field: str) -> str:
    """The normalized address; raises SubmissionRejected(TYPE_EMAIL) naming the field."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        raise SubmissionRejected(
            "TYPE_EMAIL", f"The {field} field must be a valid e-mail address.", field
        ) from None
