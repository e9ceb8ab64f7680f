"""E-mail addresses as formrelay accepts them: from form fields, the CLI and the dashboard.

Domains may be internationalized (`ann@bücher.de`): the address is kept as written and
goes into headers and the SMTP envelope IDNA-encoded (`ann@xn--bcher-kva.de`), which every
mail server and SES take. A local part (before the @) must be ASCII: a non-ASCII one needs
SMTPUTF8 at every hop, which SES and many servers do not offer, so it is refused when the
address is given, where a person can still correct it, rather than failing later unseen.
"""

from __future__ import annotations

import re

import idna
from email_validator import EmailNotValidError, validate_email

from .errors import SubmissionRejected
from .text import one_line

MAX_ADDRESS_HEADER = 320  # the column that keeps a Reply-To (name and address)
_NAME_ADDR = re.compile(r"^(?P<name>.*?)\s*<(?P<address>[^<>]*)>\s*$", re.DOTALL)


def normalize_email(value: str, field: str) -> str:
    """The normalized address; raises SubmissionRejected(TYPE_EMAIL) naming the field."""
    value = value.strip()
    try:
        return validate_email(value, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError:
        local = value.rpartition("@")[0]
        reason = (
            "an e-mail address whose part before the @ is ASCII (non-ASCII local parts "
            "are not supported)"
            if local and not local.isascii()
            else "a valid e-mail address"
        )
        raise SubmissionRejected(
            "TYPE_EMAIL", f"The {field} field must be {reason}.", field
        ) from None


def normalize_mailbox(value: str, field: str) -> str:
    """An address with an optional display name (`Bob <bob@example.net>`), normalized.

    The name may be quoted and need not be ASCII; control characters are dropped from it.
    Raises SubmissionRejected(TYPE_EMAIL) naming the field.
    """
    match = _NAME_ADDR.match(value.strip())
    if match is None:
        return normalize_email(value, field)
    address = normalize_email(match["address"], field)
    name = match["name"].strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    name = one_line(name)
    if not name:
        return address
    room = MAX_ADDRESS_HEADER - len(address) - 5  # quotes, space, angle brackets
    return format_mailbox(name[: max(room, 0)], address)


def format_mailbox(name: str, address: str) -> str:
    """`name <address>`, the name quoted when it holds specials (not encoded)."""
    if not name:
        return address
    if re.search(r'[()<>@,;:\\".\[\]]', name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


def ascii_address(address: str) -> str:
    """The address with its domain IDNA-encoded, for headers and the SMTP envelope.

    Never raises: an address whose domain cannot be encoded (stored before the rules of
    today) comes back as it is, and the backend that cannot carry it says so.
    """
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except (idna.IDNAError, UnicodeError, ValueError):
        return address
