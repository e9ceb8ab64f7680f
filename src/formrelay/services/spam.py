"""Spam and abuse: each form's rules, read cheaply on the request path, and the checks.

The public endpoint needs a form's rules before it stores anything (the honeypot's name,
whether `_cc` is allowed, where it may be posted from). Reading the form row for every
request would add a query to the hot path, so `PolicyCache` keeps each form's rules in the
process for a few seconds (`POLICY_SECONDS`): a change made in another process applies
within that time, one made in this process (dashboard, CLI) at once.

Checks that refuse raise SubmissionRejected with their own code; the content rules do not
refuse: they return the reason the submission is suspected spam, and it is stored in the
form's spam folder, answered like a success (a bot learns nothing), and never lost.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

from itsdangerous import BadSignature, Signer
from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from ..models import Form
from .addresses import normalize_email
from .errors import InvalidInput, SubmissionRejected
from .networks import Network, blocked_network, client_address
from .urls import domain_name, host_allowed, host_of, url_allowed

CAPTCHA_PROVIDERS = ("turnstile", "hcaptcha", "recaptcha-v2", "recaptcha-v3")
# The field each provider's widget adds to the form.
CAPTCHA_FIELDS = {
    "turnstile": "cf-turnstile-response",
    "hcaptcha": "h-captcha-response",
    "recaptcha-v2": "g-recaptcha-response",
    "recaptcha-v3": "g-recaptcha-response",
}
DEFAULT_HONEYPOT = "_gotcha"
POLICY_SECONDS = 5.0
MAX_LIST = 500  # entries in one list setting
_LINK = re.compile(r"https?://|www\.", re.IGNORECASE)
_FORMS = cast(Table, Form.__table__)
_POLICY_COLUMNS = [
    _FORMS.c[name]
    for name in (
        "key",
        "redirect_url",
        "allowed_domains",
        "allow_headerless",
        "rate_limit",
        "captcha_provider",
        "captcha_secret",
        "captcha_threshold",
        "captcha_action",
        "captcha_fail_open",
        "allow_cc",
        "honeypot",
        "max_links",
        "blocked_words",
        "blocked_senders",
        "blocked_addresses",
        "min_seconds",
        "akismet",
    )
]
_POLICY = select(*_POLICY_COLUMNS).where(_FORMS.c.key == bindparam("key"))


@dataclass(frozen=True)
class FormPolicy:
    """One form's spam and abuse rules, as the public endpoint applies them."""

    key: str = ""
    redirect_url: str | None = None
    allowed_domains: tuple[str, ...] = ()
    allow_headerless: bool = False
    rate_limit: str | None = None
    captcha_provider: str | None = None
    captcha_secret: str = field(default="", repr=False)
    captcha_threshold: float = 0.5
    captcha_action: str | None = None
    captcha_fail_open: bool = True
    allow_cc: bool = False
    honeypot: str = DEFAULT_HONEYPOT
    max_links: int | None = None
    blocked_words: tuple[str, ...] = ()
    blocked_senders: tuple[str, ...] = ()
    blocked_networks: tuple[Network, ...] = ()
    min_seconds: int | None = None
    akismet: bool = True
    # The blocked words as one pattern, compiled once per load (not once per request).
    blocked_words_pattern: re.Pattern[str] | None = field(default=None, compare=False)

    @property
    def captcha_field(self) -> str | None:
        return CAPTCHA_FIELDS.get(self.captcha_provider or "")


# A form that does not exist: nothing is checked, group commit answers FORM_NOT_FOUND.
NO_FORM = FormPolicy()


def load_policy(session: Session, key: str) -> FormPolicy | None:
    """The rules of the form with this key; None when there is none."""
    row = session.connection().execute(_POLICY, {"key": key}).mappings().first()
    if row is None:
        return None
    return FormPolicy(
        key=row["key"],
        redirect_url=row["redirect_url"],
        allowed_domains=tuple(row["allowed_domains"] or ()),
        allow_headerless=bool(row["allow_headerless"]),
        rate_limit=row["rate_limit"],
        captcha_provider=row["captcha_provider"],
        captcha_secret=row["captcha_secret"] or "",
        captcha_threshold=float(row["captcha_threshold"]),
        captcha_action=row["captcha_action"],
        captcha_fail_open=bool(row["captcha_fail_open"]),
        allow_cc=bool(row["allow_cc"]),
        honeypot=row["honeypot"] or DEFAULT_HONEYPOT,
        max_links=row["max_links"],
        blocked_words=tuple(w.lower() for w in row["blocked_words"] or ()),
        blocked_words_pattern=words_pattern(row["blocked_words"] or ()),
        blocked_senders=tuple(s.lower() for s in row["blocked_senders"] or ()),
        blocked_networks=tuple(blocked_network(a) for a in row["blocked_addresses"] or ()),
        min_seconds=row["min_seconds"],
        akismet=bool(row["akismet"]),
    )


# Forms changed in this process: key -> when (time.monotonic()). Any PolicyCache entry
# loaded before that is stale.
_changed: dict[str, float] = {}


def forget_policy(key: str) -> None:
    """Say that the form with this key changed: this process's caches reload it."""
    _changed[key] = time.monotonic()


class PolicyCache:
    """Each form's rules for `seconds`, per process; one query when an entry is missing."""

    def __init__(self, load: Callable[[str], FormPolicy | None], seconds: float = POLICY_SECONDS):
        self._load = load
        self._seconds = seconds
        self._entries: dict[str, tuple[float, FormPolicy | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> FormPolicy | None:
        now = time.monotonic()
        entry = self._entries.get(key)
        if (
            entry is not None
            and now - entry[0] < self._seconds
            and _changed.get(key, -1) < entry[0]
        ):
            return entry[1]
        policy = self._load(key)
        with self._lock:
            if len(self._entries) > 10_000:  # keys guessed by a scanner must not grow it for ever
                self._entries.clear()
            self._entries[key] = (now, policy)
        return policy


# -- where a request comes from ------------------------------------------------------------------
def check_origin(policy: FormPolicy, origin: str | None, referrer: str | None) -> None:
    """Refuse a request from a page outside the form's allowed domains (403
    ORIGIN_NOT_ALLOWED): its Origin, else its Referer, names the host. Neither header is
    refused too, unless the form allows header-less clients."""
    if not policy.allowed_domains:
        return
    sent = origin if origin and origin != "null" else referrer
    host = host_of(sent) if sent else None
    if host is None:
        if policy.allow_headerless and not origin:
            return
        raise SubmissionRejected(
            "ORIGIN_NOT_ALLOWED",
            "This form accepts submissions only from its own site, and the request "
            "names no page (no Origin or Referer header).",
        )
    if not host_allowed(host, policy.allowed_domains):
        raise SubmissionRejected(
            "ORIGIN_NOT_ALLOWED",
            f"This form does not accept submissions from {host}.",
        )


def next_allowed(policy: FormPolicy, next_url: str | None) -> bool:
    """Whether `_next` is inside the form's allowed domains (or either is unset)."""
    return (
        not policy.allowed_domains or not next_url or url_allowed(next_url, policy.allowed_domains)
    )


def check_next(policy: FormPolicy, next_url: str | None) -> None:
    """With allowed domains set, `_next` must point into them (400 INVALID_NEXT)."""
    if not next_allowed(policy, next_url):
        raise SubmissionRejected(
            "INVALID_NEXT",
            "The _next field must point to one of this form's sites, "
            f"not {host_of(next_url) or next_url}.",
            "_next",
        )


# -- content rules ----------------------------------------------------------------------------
def content_reason(
    policy: FormPolicy,
    fields: Sequence[tuple[str, str]],
    *,
    reply_to: str | None,
    remote_addr: str | None,
    seconds_since_load: float | None,
) -> str | None:
    """Why the submission looks like spam by the form's content rules; None when it does
    not. `seconds_since_load` is None when the page did not carry formrelay.js."""
    if policy.blocked_networks and remote_addr:
        try:
            address = ipaddress.ip_address(client_address(remote_addr))
        except ValueError:
            address = None
        if address is not None and any(address in n for n in policy.blocked_networks):
            return f"sent from a blocked address ({remote_addr})"
    if policy.blocked_senders:
        senders = [v for n, v in fields if n.lower() == "email"] + ([reply_to] if reply_to else [])
        for sender in senders:
            if sender_blocked(sender, policy.blocked_senders):
                return f"from a blocked sender ({sender.strip()})"
    loaded = seconds_since_load
    if policy.min_seconds and loaded is not None and loaded < policy.min_seconds:
        return (
            f"sent {seconds_since_load:.1f} s after the page loaded "
            f"(at least {policy.min_seconds} s expected)"
        )
    if policy.max_links is not None:
        links = sum(len(_LINK.findall(value)) for _, value in fields)
        if links > policy.max_links:
            return f"{links} links (at most {policy.max_links} allowed)"
    pattern = policy.blocked_words_pattern
    if pattern is None and policy.blocked_words:
        pattern = words_pattern(policy.blocked_words)
    if pattern is not None:
        found = next((m for m in map(pattern.search, (v for _, v in fields)) if m), None)
        if found:
            return f"contains a blocked word ({found.group(0).lower()})"
    return None


def words_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any of `words` (or phrases) whole, so that
    "ass" does not catch "class"; None for no words."""
    alternatives = "|".join(re.escape(w.lower()) for w in words if w)
    if not alternatives:
        return None
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def sender_blocked(sender: str, blocked: Iterable[str]) -> bool:
    """Whether an address is blocked: listed whole, or its domain listed as "@example.com"."""
    address = sender.strip().lower()
    if "<" in address and address.endswith(">"):
        address = address[address.rindex("<") + 1 : -1]
    domain = "@" + address.rpartition("@")[2]
    return any(entry in (address, domain) for entry in blocked)


# -- owners' changes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SpamChanges:
    """Changes to a form's spam and abuse settings; None leaves one as it is. Lists are
    given as text, comma- or newline-separated; "" empties them."""

    allowed_domains: str | None = None
    allow_headerless: bool | None = None
    rate_limit: str | None = None  # "" restores the default (FORMRELAY_RATE_LIMIT)
    captcha_provider: str | None = None  # "off" or "" removes the CAPTCHA
    captcha_secret: str | None = None
    captcha_threshold: float | None = None
    captcha_action: str | None = None
    captcha_fail_open: bool | None = None
    allow_cc: bool | None = None
    honeypot: str | None = None
    max_links: int | None = None  # a negative number removes the rule
    blocked_words: str | None = None
    blocked_senders: str | None = None
    blocked_addresses: str | None = None
    min_seconds: int | None = None  # 0 removes the rule
    akismet: bool | None = None
    notify_limit: int | None = None  # a negative number restores the default

    def __bool__(self) -> bool:
        return any(getattr(self, f) is not None for f in self.__dataclass_fields__)


def update_spam_settings(session: Session, form: Form, changes: SpamChanges) -> list[str]:
    """Apply `changes` to `form`; returns the names of the settings that changed, in order.

    Raises InvalidInput for a bad value (nothing is changed then): a malformed domain,
    limit, address or network, an unknown provider, a CAPTCHA without its secret, a
    threshold outside 0..1, a redirect outside newly allowed domains.
    """
    c = changes
    new: dict[str, object] = {}
    if c.allowed_domains is not None:
        new["allowed_domains"] = parse_domains(c.allowed_domains)
    if c.allow_headerless is not None:
        new["allow_headerless"] = c.allow_headerless
    if c.rate_limit is not None:
        new["rate_limit"] = parse_rate_limit(c.rate_limit)
    if c.captcha_provider is not None:
        provider = c.captcha_provider.strip().lower()
        if provider in ("", "off", "none"):
            new["captcha_provider"] = None
        elif provider not in CAPTCHA_PROVIDERS:
            raise InvalidInput(
                f"The CAPTCHA provider must be one of {', '.join(CAPTCHA_PROVIDERS)} or off, "
                f"not {c.captcha_provider!r}."
            )
        else:
            new["captcha_provider"] = provider
    if c.captcha_secret is not None:
        secret = c.captcha_secret.strip()
        if len(secret) > 255:
            raise InvalidInput("A CAPTCHA secret can have at most 255 characters.")
        new["captcha_secret"] = secret or None
    if c.captcha_threshold is not None:
        if not 0.0 <= c.captcha_threshold <= 1.0:
            raise InvalidInput("The reCAPTCHA v3 score threshold must be from 0.0 to 1.0.")
        new["captcha_threshold"] = c.captcha_threshold
    if c.captcha_action is not None:
        action = c.captcha_action.strip()
        if len(action) > 100:
            raise InvalidInput("A reCAPTCHA v3 action can have at most 100 characters.")
        new["captcha_action"] = action or None
    if c.captcha_fail_open is not None:
        new["captcha_fail_open"] = c.captcha_fail_open
    if c.allow_cc is not None:
        new["allow_cc"] = c.allow_cc
    if c.honeypot is not None:
        new["honeypot"] = parse_honeypot(c.honeypot)
    if c.max_links is not None:
        new["max_links"] = None if c.max_links < 0 else c.max_links
    if c.blocked_words is not None:
        new["blocked_words"] = _unique(w.strip().lower() for w in split_list(c.blocked_words))
    if c.blocked_senders is not None:
        new["blocked_senders"] = [_blocked_sender(s) for s in split_list(c.blocked_senders)]
    if c.blocked_addresses is not None:
        new["blocked_addresses"] = [_blocked_network(a) for a in split_list(c.blocked_addresses)]
    if c.min_seconds is not None:
        if c.min_seconds > 3600:
            raise InvalidInput("The minimum time before submitting can be at most 3600 seconds.")
        new["min_seconds"] = c.min_seconds or None
    if c.akismet is not None:
        new["akismet"] = c.akismet
    if c.notify_limit is not None:
        new["notify_limit"] = None if c.notify_limit < 0 else c.notify_limit

    for name in ("blocked_words", "blocked_senders", "blocked_addresses", "allowed_domains"):
        if len(cast(list[str], new.get(name, []))) > MAX_LIST:
            raise InvalidInput(f"A list can have at most {MAX_LIST} entries.")
    captcha = new.get("captcha_provider", form.captcha_provider)
    if captcha and not new.get("captcha_secret", form.captcha_secret):
        raise InvalidInput(f"The {captcha} CAPTCHA needs its secret key (--captcha-secret).")
    domains = cast(list[str], new.get("allowed_domains", form.allowed_domains or []))
    check_redirect_allowed(domains, form.redirect_url)

    changed: list[str] = []
    for name, value in new.items():
        if getattr(form, name) != value:
            setattr(form, name, value)
            changed.append(name.replace("_", "-"))
    session.flush()
    forget_policy(form.key)
    return changed


def check_redirect_allowed(domains: Sequence[str], redirect_url: str | None) -> None:
    """Raise InvalidInput when there are allowed `domains` and `redirect_url` is outside
    them (Formlander checks its success URL against the allowed origins the same way)."""
    if not domains or not redirect_url:
        return
    if not url_allowed(redirect_url, domains):
        raise InvalidInput(
            f"The redirect must point to one of the form's allowed domains "
            f"({', '.join(domains)}), not {host_of(redirect_url) or redirect_url}."
        )


def split_list(text: str) -> list[str]:
    """Entries of a comma- or newline-separated list, stripped, blanks dropped."""
    return [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]


_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")


def parse_domains(text: str) -> list[str]:
    """Allowed domains from "example.org, *.example.net", each written as a browser's URL
    parser writes its host (urls.host_of: IDNA in punycode, lower case); [] for "".
    Raises InvalidInput for anything that is not a host name or a `*.` wildcard of one."""
    domains: list[str] = []
    for raw in split_list(text):
        entry = raw.strip()
        if "://" in entry:  # a pasted URL: its host is what was meant
            entry = host_of(entry) or entry
        wildcard = entry.startswith("*.")
        name = domain_name(entry[2:] if wildcard else entry)
        if name is None:
            raise InvalidInput(f"{raw!r} is not a domain name.")
        entry = ("*." if wildcard else "") + name
        if not _DOMAIN.match(entry) and name != "localhost":
            raise InvalidInput(
                f"{raw!r} is not a domain name (such as example.org or *.example.org)."
            )
        domains.append(entry)
    return _unique(domains)


def parse_rate_limit(text: str) -> str | None:
    """A per-address limit such as "5/minute;100/day"; None for "" (the default)."""
    from ..settings import valid_rate_limit

    text = text.strip()
    if not text:
        return None
    if not valid_rate_limit(text) or len(text) > 200:
        raise InvalidInput(
            f"{text!r} is not a rate limit: write it as 5/minute, or several as 5/minute;100/day."
        )
    return text


def parse_honeypot(text: str) -> str:
    from .submissions import EMAIL_FIELD, SPECIAL_FIELDS

    name = text.strip() or DEFAULT_HONEYPOT
    taken = (name in SPECIAL_FIELDS and name != DEFAULT_HONEYPOT) or name.lower() == EMAIL_FIELD
    if taken or len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+", name):
        raise InvalidInput(
            f"{text!r} cannot be a honeypot field name: use letters, digits, _ . - [ ] "
            "(at most 64)."
        )
    return name


def _blocked_sender(raw: str) -> str:
    entry = raw.strip().lower()
    if entry.startswith("*@"):
        entry = entry[1:]
    if entry.startswith("@"):
        domain = parse_domains(entry[1:])
        if len(domain) != 1 or domain[0].startswith("*."):
            raise InvalidInput(f"{raw!r} is not an address or @domain.")
        return "@" + domain[0]
    try:
        return normalize_email(entry, "blocked sender").lower()
    except SubmissionRejected:
        raise InvalidInput(f"{raw!r} is not an e-mail address or @domain.") from None


def _blocked_network(raw: str) -> str:
    try:
        return str(blocked_network(raw))
    except ValueError:
        raise InvalidInput(
            f"{raw!r} is not an IP address or range (such as 203.0.113.7 or 203.0.113.0/24)."
        ) from None


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


# -- formrelay.js's page-load time ------------------------------------------------------------
def _stamp_signer(secret: str) -> Signer:
    return Signer(secret, salt="formrelay.js page load")


def sign_page_load(secret: str, at: float) -> str:
    """A page-load time (`at`, epoch seconds) signed so that a client cannot make it up."""
    return _stamp_signer(secret).sign(str(int(at * 1000))).decode()


def seconds_since_load(secret: str, stamp: str, now: float) -> float | None:
    """How long ago the signed page-load time was; None when the stamp is not ours."""
    try:
        millis = int(_stamp_signer(secret).unsign(stamp.strip()).decode())
    except (BadSignature, ValueError):
        return None
    return max(0.0, now - millis / 1000)
