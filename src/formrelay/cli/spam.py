"""The spam and abuse options of `form update`, and how `form show` describes them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from ..models import Form
from ..services import spam
from ..settings import get_settings
from .common import ON_OFF

F = TypeVar("F", bound=Callable[..., Any])

# In the order `form update --help` lists them, after --remove-to and before --files.
SPAM_OPTIONS = (
    click.option(
        "--allowed-domains",
        help='Sites the form may be posted from: "example.org,*.example.net"; "" allows any.',
    ),
    click.option(
        "--allow-headerless",
        type=ON_OFF,
        help="With allowed domains: accept requests with no Origin or Referer.",
    ),
    click.option(
        "--rate-limit", help='Per client address: "5/minute;100/day"; "" for the default.'
    ),
    click.option(
        "--captcha",
        type=click.Choice([*spam.CAPTCHA_PROVIDERS, "off"]),
        help="The CAPTCHA the form's page carries, verified server-side.",
    ),
    click.option("--captcha-secret", help="The CAPTCHA provider's secret key for this site."),
    click.option(
        "--captcha-threshold", type=click.FloatRange(0, 1), help="reCAPTCHA v3: the lowest score."
    ),
    click.option("--captcha-action", help='reCAPTCHA v3: the expected action; "" for any.'),
    click.option(
        "--captcha-fail",
        type=click.Choice(["open", "closed"]),
        help="Provider away: keep as spam (open) or refuse with 503 (closed).",
    ),
    click.option("--allow-cc", type=ON_OFF, help="Whether _cc may send copies to other addresses."),
    click.option(
        "--honeypot", metavar="NAME", help="The honeypot field's name (_gotcha by default)."
    ),
    click.option("--max-links", metavar="N|off", help="More links than N: kept as spam."),
    click.option(
        "--blocked-words", help='Words or phrases, comma-separated: kept as spam; "" none.'
    ),
    click.option(
        "--blocked-senders", help='Addresses or @domains, comma-separated: kept as spam; "" none.'
    ),
    click.option(
        "--blocked-addresses",
        help='Client IPs or ranges (203.0.113.0/24), comma-separated: kept as spam; "" none.',
    ),
    click.option(
        "--min-seconds",
        type=click.IntRange(0, 3600),
        help="With formrelay.js: sooner after page load is spam; 0 turns it off.",
    ),
    click.option(
        "--akismet", type=ON_OFF, help="Whether Akismet judges submissions (with its key)."
    ),
    click.option(
        "--notify-limit",
        metavar="N|default",
        help="Notifications an hour at most (0: no ceiling); "
        "default: FORMRELAY_NOTIFY_LIMIT_PER_FORM.",
    ),
)


def with_spam_options(command: F) -> F:
    """Give `command` the spam options; they reach it in its keyword arguments."""
    for option in reversed(SPAM_OPTIONS):
        command = option(command)
    return command


def describe_spam(f: Form) -> list[tuple[str, str]]:
    """The form's spam and abuse settings, as `form update` names them."""
    config = get_settings()

    def onoff(value: bool) -> str:
        return "on" if value else "off"

    def listed(values: Sequence[str]) -> str:
        return ", ".join(values) or "(none)"

    captcha = f.captcha_provider or "off"
    if f.captcha_provider:
        captcha += f" (secret {'set' if f.captcha_secret else 'missing'}; provider away: fail "
        captcha += ("open: kept as spam" if f.captcha_fail_open else "closed: 503") + ")"
    ceiling = (
        f"{f.notify_limit or 'none'} an hour"
        if f.notify_limit is not None
        else f"(default: {config.notify_limit_per_form} an hour)"
        if config.notify_limit_per_form
        else "(default: none)"
    )
    return [
        ("Allowed domains", listed(f.allowed_domains or []) if f.allowed_domains else "(any)"),
        ("Header-less", onoff(f.allow_headerless) + " (requests with no Origin or Referer)"),
        ("Rate limit", f.rate_limit or f"(default: {config.rate_limit}) per address"),
        ("CAPTCHA", captcha),
        *(
            [("v3 threshold", f"{f.captcha_threshold:g}, action {f.captcha_action or '(any)'}")]
            if f.captcha_provider == "recaptcha-v3"
            else []
        ),
        ("Allow _cc", onoff(f.allow_cc)),
        ("Honeypot", f.honeypot),
        ("Max links", "(no limit)" if f.max_links is None else str(f.max_links)),
        ("Blocked words", listed(f.blocked_words or [])),
        ("Blocked senders", listed(f.blocked_senders or [])),
        ("Blocked IPs", listed(f.blocked_addresses or [])),
        ("Min seconds", str(f.min_seconds) if f.min_seconds else "(none)"),
        (
            "Akismet",
            onoff(f.akismet) + ("" if config.akismet_api_key else " (AKISMET_API_KEY unset)"),
        ),
        ("Ceiling", ceiling),
    ]


def parse_spam_options(options: dict[str, object]) -> spam.SpamChanges:
    def number(name: str, off: str, off_value: int) -> int | None:
        raw = options.get(name)
        if raw is None:
            return None
        text = str(raw).strip().lower()
        if text == off:
            return off_value
        try:
            value = int(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not a whole number or {off}", param_hint=f"--{name.replace('_', '-')}"
            ) from None
        if value < 0:
            raise click.BadParameter(
                "must not be negative", param_hint=f"--{name.replace('_', '-')}"
            )
        return value

    fail = options.get("captcha_fail")
    return spam.SpamChanges(
        allowed_domains=_opt_str(options.get("allowed_domains")),
        allow_headerless=_opt_bool(options.get("allow_headerless")),
        rate_limit=_opt_str(options.get("rate_limit")),
        captcha_provider=_opt_str(options.get("captcha")),
        captcha_secret=_opt_str(options.get("captcha_secret")),
        captcha_threshold=options.get("captcha_threshold"),  # type: ignore[arg-type]
        captcha_action=_opt_str(options.get("captcha_action")),
        captcha_fail_open=None if fail is None else fail == "open",
        allow_cc=_opt_bool(options.get("allow_cc")),
        honeypot=_opt_str(options.get("honeypot")),
        max_links=number("max_links", "off", -1),
        blocked_words=_opt_str(options.get("blocked_words")),
        blocked_senders=_opt_str(options.get("blocked_senders")),
        blocked_addresses=_opt_str(options.get("blocked_addresses")),
        min_seconds=options.get("min_seconds"),  # type: ignore[arg-type]
        akismet=_opt_bool(options.get("akismet")),
        notify_limit=number("notify_limit", "default", -1),
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_bool(value: object) -> bool | None:
    return None if value is None else value == "on"
