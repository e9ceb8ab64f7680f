"""`formrelay form show` and `form update` with the spam and abuse settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import Result
from flask.cli import ScriptInfo

from formrelay.cli import cli
from formrelay.extensions import db
from formrelay.models import Form

from .factories import make_form
from .web.shapes import post_json

Run = Callable[..., Result]


@pytest.fixture
def formrelay(app, runner, monkeypatch) -> Run:
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")

    def invoke(*args: str) -> Result:
        info = ScriptInfo(create_app=lambda: app, load_dotenv_defaults=False)
        return runner.invoke(cli, list(args), obj=info)

    return invoke


def shown(result: Result) -> dict[str, str]:
    """`form show`'s rows by label (the first line of each)."""
    rows: dict[str, str] = {}
    width = len("Allowed domains")  # the longest label sets the column
    for line in result.output.splitlines():
        label, value = line[:width].strip(), line[width + 1 :].strip()
        if label and label not in rows:
            rows[label] = value
    return rows


def test_form_update_sets_every_spam_setting_and_show_prints_them(formrelay):
    form = make_form(db.session)
    result = formrelay(
        "form",
        "update",
        form.key,
        "--allowed-domains",
        "example.org,*.example.net",
        "--allow-headerless",
        "on",
        "--rate-limit",
        "5/minute;100/day",
        "--captcha",
        "recaptcha-v3",
        "--captcha-secret",
        "S3CRET",
        "--captcha-threshold",
        "0.7",
        "--captcha-action",
        "contact",
        "--captcha-fail",
        "closed",
        "--allow-cc",
        "on",
        "--honeypot",
        "website",
        "--max-links",
        "2",
        "--blocked-words",
        "casino,cheap pills",
        "--blocked-senders",
        "@spam.example",
        "--blocked-addresses",
        "203.0.113.0/24",
        "--min-seconds",
        "3",
        "--akismet",
        "off",
        "--notify-limit",
        "50",
    )
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first == (
        f"Updated form 'Contact' (key {form.key}): allowed-domains, allow-headerless, "
        "rate-limit, captcha-provider, captcha-secret, captcha-threshold, captcha-action, "
        "captcha-fail-open, allow-cc, honeypot, max-links, blocked-words, blocked-senders, "
        "blocked-addresses, min-seconds, akismet, notify-limit"
    )
    rows = shown(formrelay("form", "show", form.key))
    assert rows["Allowed domains"] == "example.org, *.example.net"
    assert rows["Header-less"] == "on (requests with no Origin or Referer)"
    assert rows["Rate limit"] == "5/minute;100/day"
    assert rows["CAPTCHA"] == ("recaptcha-v3 (secret set; provider away: fail closed: 503)")
    assert rows["v3 threshold"] == "0.7, action contact"
    assert (rows["Allow _cc"], rows["Honeypot"], rows["Max links"]) == ("on", "website", "2")
    assert rows["Blocked words"] == "casino, cheap pills"
    assert rows["Blocked senders"] == "@spam.example"
    assert rows["Blocked IPs"] == "203.0.113.0/24"
    assert (rows["Min seconds"], rows["Akismet"]) == ("3", "off (AKISMET_API_KEY unset)")
    assert rows["Ceiling"] == "50 an hour"
    assert "S3CRET" not in formrelay("form", "show", form.key).output


def test_empty_values_restore_the_defaults(formrelay):
    form = make_form(
        db.session,
        allowed_domains=["example.org"],
        rate_limit="1/minute",
        captcha_provider="turnstile",
        captcha_secret="s",
        max_links=1,
        notify_limit=5,
    )
    result = formrelay(
        "form",
        "update",
        form.key,
        "--allowed-domains",
        "",
        "--rate-limit",
        "",
        "--captcha",
        "off",
        "--max-links",
        "off",
        "--notify-limit",
        "default",
    )
    assert result.exit_code == 0, result.output
    db.session.refresh(form)
    assert (form.allowed_domains, form.rate_limit, form.captcha_provider) == ([], None, None)
    assert (form.max_links, form.notify_limit) == (None, None)


def test_cc_goes_on_and_off_from_the_cli(formrelay, client):
    form = make_form(db.session)
    data = {"message": "hi", "_cc": "copy@example.com"}
    assert post_json(client, form.key, data).json["errors"][0]["code"] == "CC_NOT_ALLOWED"
    assert formrelay("form", "update", form.key, "--allow-cc", "on").exit_code == 0
    assert post_json(client, form.key, data).status_code == 200
    assert formrelay("form", "update", form.key, "--allow-cc", "off").exit_code == 0
    assert post_json(client, form.key, data).status_code == 400


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--allowed-domains", "not a domain"], "'not a domain' is not a domain name"),
        (["--rate-limit", "lots"], "'lots' is not a rate limit"),
        (["--captcha", "turnstile"], "The turnstile CAPTCHA needs its secret key"),
        (["--honeypot", "email"], "'email' cannot be a honeypot field name"),
        (["--blocked-addresses", "10.0.0.300"], "'10.0.0.300' is not an IP address or range"),
        (["--max-links", "many"], "'many' is not a whole number or off"),
    ],
)
def test_a_bad_spam_setting_is_refused_and_nothing_changes(formrelay, args, error):
    form = make_form(db.session)
    result = formrelay("form", "update", form.key, *args)
    assert result.exit_code != 0
    assert error in result.output
    db.session.refresh(form)
    assert (form.allowed_domains, form.rate_limit, form.captcha_provider) == ([], None, None)
    assert isinstance(db.session.get(Form, form.id), Form)
