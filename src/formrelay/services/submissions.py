"""A submission's special fields: split them from the data and validate them.

`prepare_submission` touches no database: the web edge calls it before group commit
(formrelay.ingest) stores the result with services.outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Form
from .addresses import normalize_email, normalize_mailbox
from .attachments import StoredFile
from .errors import FieldError, FormDisabled, FormNotFound, SubmissionRejected
from .text import CONTROL_CHARACTERS, one_line
from .urls import has_scheme, http_url

# Fields that steer formrelay (Formspree's names): never stored nor shown as data.
REPLY_TO, SUBJECT, NEXT, CC, HONEYPOT = "_replyto", "_subject", "_next", "_cc", "_gotcha"
PAGE_LOAD = "_formrelay"  # formrelay.js: the signed time the page was loaded
# Formspree's other names, which formrelay accepts and does not act on (yet): hidden too, so
# a form moved from Formspree does not show them to its owner. Any other `_x` is data.
IGNORED_FIELDS = frozenset({"_language", "_template", "_format"})
SPECIAL_FIELDS = frozenset({REPLY_TO, SUBJECT, NEXT, CC, HONEYPOT, PAGE_LOAD}) | IGNORED_FIELDS
# The CAPTCHA widgets' answers: verified, never stored as data.
CAPTCHA_TOKEN_FIELDS = frozenset(
    {"cf-turnstile-response", "h-captcha-response", "g-recaptcha-response"}
)
MAX_SUBJECT = 200
MAX_CC = 5
EMAIL_FIELD = "email"  # its value, in any case, is the Reply-To without _replyto


@dataclass(frozen=True)
class SubmissionMeta:
    """What the request says about its sender, stored beside the fields."""

    remote_addr: str | None = None
    user_agent: str | None = None
    referrer: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class PreparedSubmission:
    """A validated submission, not yet bound to a form or stored."""

    fields: list[tuple[str, str]]  # data fields only, in submitted order
    meta: SubmissionMeta
    reply_to: str | None = None
    subject: str | None = None
    cc: tuple[str, ...] = ()
    next_url: str | None = None
    spam_reason: str | None = None
    # Written to storage by the web edge, recorded with the submission unless it is spam.
    files: tuple[StoredFile, ...] = ()


def check_form(session: Session, key: str) -> None:
    """Raise FormNotFound or FormDisabled unless the form with this key takes submissions."""
    enabled = session.scalar(select(Form.enabled).where(Form.key == key))
    if enabled is None:
        raise FormNotFound()
    if not enabled:
        raise FormDisabled()


def prepare_submission(
    fields: list[tuple[str, str]],
    meta: SubmissionMeta,
    *,
    honeypot: str = HONEYPOT,
    allow_cc: bool = False,
    has_files: bool = False,
) -> PreparedSubmission:
    """Split the special fields from the data and validate them; touches no database.

    A special field sent more than once has every value validated; the first non-blank
    one is used, except `_cc`, whose addresses are all merged (at most MAX_CC in all).
    `_cc` is refused (CC_NOT_ALLOWED) unless `allow_cc`: it mails addresses the submitter
    chooses. Without `_replyto` the first field named email is the Reply-To; every one of
    them must be an address. A filled honeypot (`_gotcha`, or the form's own `honeypot`
    name) gives a submission marked as spam whatever else it holds, so that it is
    answered like any success and a bot learns nothing. A submission of files alone
    (`has_files`) is not empty. Raises SubmissionRejected naming every invalid field (once
    each).
    """
    special: dict[str, list[str]] = {}
    data: list[tuple[str, str]] = []
    for name, value in fields:
        if name in SPECIAL_FIELDS or name in CAPTCHA_TOKEN_FIELDS or name == honeypot:
            special.setdefault(name, []).append(value)
        else:
            data.append((name, value))

    honeypots = (*special.get(HONEYPOT, ()), *special.get(honeypot, ()))
    if any(value.strip() for value in honeypots):
        return _lenient_spam(data, special, meta, allow_cc, "honeypot field was filled")

    if not has_files and not any(value.strip() for _, value in data):
        raise SubmissionRejected("EMPTY", "The form was submitted with no data.")

    errors: list[FieldError] = []
    reply_to = next_url = None
    cc: list[str] = []
    try:
        email = _first([normalize_email(v, EMAIL_FIELD) for v in _email_values(data)])
    except SubmissionRejected as exc:
        errors.extend(exc.errors)
        email = None
    try:
        explicit = special.get(REPLY_TO, [])
        reply_to = _first([normalize_mailbox(v, REPLY_TO) for v in explicit if v.strip()])
    except SubmissionRejected as exc:
        errors.extend(exc.errors)
    reply_to = reply_to or email
    cc_values = [value for value in special.get(CC, []) if value.strip()]
    if cc_values and not allow_cc:
        errors.append(
            FieldError(
                "CC_NOT_ALLOWED",
                f"This form does not send copies to other addresses: remove the {CC} "
                "field, or have the form's owner allow it.",
                CC,
            )
        )
    else:
        try:
            cc = _cc_list(cc_values)
        except SubmissionRejected as exc:
            errors.extend(exc.errors)
    try:
        next_url = _first([_next_url(raw, meta) for raw in special.get(NEXT, [])])
    except SubmissionRejected as exc:
        errors.extend(exc.errors)
    if errors:
        raise SubmissionRejected.from_errors(errors)
    return PreparedSubmission(
        data,
        meta,
        reply_to=reply_to,
        subject=_first([clean_subject(raw) for raw in special.get(SUBJECT, [])]),
        cc=tuple(cc),
        next_url=next_url,
    )


def clean_subject(raw: str) -> str | None:
    """One line of text, at most MAX_SUBJECT characters; None when blank.

    Line breaks and other control characters (ESC, DEL, C1) become spaces: a subject
    goes into a header and onto terminals.
    """
    subject = one_line(raw)
    return subject[:MAX_SUBJECT] or None


def _first(values: list[str | None]) -> str | None:
    return next((value for value in values if value), None)


def _email_values(data: list[tuple[str, str]]) -> list[str]:
    """The non-blank values of the fields named email (in any case): each must be an address."""
    return [value for name, value in data if name.lower() == EMAIL_FIELD and value.strip()]


def _cc_list(values: list[str]) -> list[str]:
    """Every address of every _cc value, in order, de-duplicated without regard to case."""
    addresses = _unique([part.strip() for raw in values for part in raw.split(",")])
    if len(addresses) > MAX_CC:  # counted before the (costlier) validation of each
        raise SubmissionRejected(
            "TOO_MANY_CC", f"The {CC} field lists more than {MAX_CC} addresses.", CC
        )
    return _unique([normalize_email(address, CC) for address in addresses])


def _unique(addresses: list[str]) -> list[str]:
    """The non-blank addresses in order, each once, without regard to case."""
    seen: set[str] = set()
    unique: list[str] = []
    for address in addresses:
        if address and address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique


def _next_url(raw: str, meta: SubmissionMeta) -> str | None:
    """An absolute http(s) URL, or a path resolved against the referring page."""
    raw = raw.strip()
    if not raw:
        return None
    if CONTROL_CHARACTERS.search(raw):
        raise _bad_next("must not contain control characters")
    if has_scheme(raw):
        if not raw.lower().startswith(("http:", "https:")):
            raise _bad_next("must be an http(s) URL or a path")
        base = None
    else:
        base = http_url(meta.referrer) or http_url(meta.origin)
        if not base:
            raise _bad_next(
                "is a relative path, but the request names no page to resolve it against"
            )
    # The URL as a browser reads it (services/urls.py), which is what the browser is sent.
    url = http_url(raw, base)
    if not url:
        raise _bad_next("is not a valid URL")
    return url


def _bad_next(reason: str) -> SubmissionRejected:
    return SubmissionRejected("INVALID_NEXT", f"The {NEXT} field {reason}.", NEXT)


def _lenient_spam(
    data: list[tuple[str, str]],
    special: dict[str, list[str]],
    meta: SubmissionMeta,
    allow_cc: bool,
    reason: str,
) -> PreparedSubmission:
    """A submission kept as spam without validation: it keeps every special field that is
    valid (an invalid one is dropped, never reported to the bot), so that "Not spam" sends
    what the same submission would have sent had it not been taken for spam."""

    def valid(values: list[str], check: Callable[[str], str | None]) -> list[str | None]:
        kept: list[str | None] = []
        for value in values:
            try:
                kept.append(check(value))
            except SubmissionRejected:
                continue
        return kept

    explicit = [v for v in special.get(REPLY_TO, []) if v.strip()]
    reply_to = _first(valid(explicit, lambda v: normalize_mailbox(v, REPLY_TO))) or _first(
        valid(_email_values(data), lambda v: normalize_email(v, EMAIL_FIELD))
    )
    cc: list[str] = []
    if allow_cc:
        try:
            cc = _cc_list([value for value in special.get(CC, []) if value.strip()])
        except SubmissionRejected:
            cc = []
    return PreparedSubmission(
        data,
        meta,
        reply_to=reply_to,
        subject=_first([clean_subject(raw) for raw in special.get(SUBJECT, [])]),
        cc=tuple(cc),
        next_url=_lenient_next_url(special.get(NEXT, []), meta),
        spam_reason=reason,
    )


def _lenient_next_url(values: list[str], meta: SubmissionMeta) -> str | None:
    """_next for a spam submission: an invalid one is ignored, never reported to the bot."""
    for raw in values:
        try:
            url = _next_url(raw, meta)
        except SubmissionRejected:
            return None
        if url:
            return url
    return None
