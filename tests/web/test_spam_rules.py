"""A form's spam and abuse rules on POST /f/<key>: each accepted and refused (or kept as
spam), in the JSON and the browser shape."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from formrelay.extensions import db
from formrelay.models import Delivery, DeliveryStatus, Form
from formrelay.services import inbox, spam
from formrelay.services.errors import InvalidInput

from ..factories import make_form
from .shapes import assert_accepted, assert_refused, post_html, post_json, stored

SITE = "https://www.example.org"


def deliveries_of(submission_id: int) -> list[Delivery]:
    db.session.rollback()
    return list(db.session.scalars(select(Delivery).where(Delivery.submission_id == submission_id)))


def assert_kept_as_spam(client, key, data, reason: str, **headers) -> None:
    """Both shapes answer as for any success (a bot learns nothing); both submissions are
    in the spam folder with `reason`, and nothing is sent for them."""
    kept = assert_accepted(client, key, data, **headers)
    assert [(s.is_spam, s.spam_reason) for s in kept] == [(True, reason)] * 2
    assert [deliveries_of(s.id) for s in kept] == [[], []]


def assert_in_inbox(client, key, data, **headers) -> None:
    kept = assert_accepted(client, key, data, **headers)
    assert [(s.is_spam, s.spam_reason) for s in kept] == [(False, None)] * 2
    assert all(len(deliveries_of(s.id)) == 1 for s in kept)


# -- allowed domains --------------------------------------------------------------------------
@pytest.fixture
def guarded(app) -> Form:
    return make_form(db.session, allowed_domains=["www.example.org", "*.example.net"])


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": SITE},
        {"Origin": "https://shop.example.net"},
        {"Origin": "https://a.b.example.net:8443"},
        {"Referer": f"{SITE}/contact?x=1"},
        {"Origin": "null", "Referer": f"{SITE}/contact"},
    ],
)
def test_a_request_from_an_allowed_domain_is_accepted(client, guarded, headers):
    assert_in_inbox(client, guarded.key, {"message": "hi"}, **headers)


@pytest.mark.parametrize(
    ("headers", "host"),
    [
        ({"Origin": "https://evil.example"}, "evil.example"),
        ({"Origin": "https://example.net"}, "example.net"),  # *.example.net: subdomains only
        ({"Origin": "https://www.example.org.evil.example"}, "www.example.org.evil.example"),
        ({"Referer": "http://evilexample.net/page"}, "evilexample.net"),
        # The Origin decides when both are sent.
        ({"Origin": "https://evil.example", "Referer": f"{SITE}/"}, "evil.example"),
    ],
)
def test_a_request_from_another_site_is_refused_naming_the_host(client, guarded, headers, host):
    message = f"This form does not accept submissions from {host}."
    assert_refused(
        client, guarded.key, {"message": "hi"}, 403, "ORIGIN_NOT_ALLOWED", message, **headers
    )


def test_a_request_naming_no_page_is_refused_unless_the_form_allows_it(client, guarded):
    message = (
        "This form accepts submissions only from its own site, and the request names no "
        "page (no Origin or Referer header)."
    )
    assert_refused(client, guarded.key, {"message": "hi"}, 403, "ORIGIN_NOT_ALLOWED", message)
    guarded.allow_headerless = True
    db.session.commit()
    spam.forget_policy(guarded.key)
    assert_in_inbox(client, guarded.key, {"message": "hi"})
    # Header-less is not "from anywhere": a named other site is still refused.
    assert_refused(
        client,
        guarded.key,
        {"message": "hi"},
        403,
        "ORIGIN_NOT_ALLOWED",
        "This form does not accept submissions from evil.example.",
        Origin="https://evil.example",
    )


def test_a_form_without_allowed_domains_takes_any_origin(client, app):
    form = make_form(db.session)
    assert_in_inbox(client, form.key, {"message": "hi"}, Origin="https://anywhere.example")
    assert_in_inbox(client, form.key, {"message": "hi"})


def test_a_change_of_domains_applies_to_the_next_request(client, app):
    form = make_form(db.session)
    assert_in_inbox(client, form.key, {"message": "hi"}, Origin="https://other.example")
    spam.update_spam_settings(db.session, form, spam.SpamChanges(allowed_domains="example.org"))
    db.session.commit()
    r = post_json(client, form.key, {"message": "hi"}, Origin="https://other.example")
    assert r.status_code == 403


# -- _next and the form's redirect inside the allowed domains -----------------------------
def test_next_inside_the_allowed_domains_is_followed(client, guarded):
    data = {"message": "hi", "_next": "https://shop.example.net/thanks"}
    r = post_html(client, guarded.key, data, Origin=SITE)
    assert (r.status_code, r.headers["Location"]) == (303, "https://shop.example.net/thanks")
    r = post_json(client, guarded.key, {**data, "_next": "/thanks"}, Referer=f"{SITE}/contact")
    assert r.json["next"] == f"{SITE}/thanks"


def test_next_outside_the_allowed_domains_is_refused(client, guarded):
    message = "The _next field must point to one of this form's sites, not evil.example."
    data = {"message": "hi", "_next": "https://evil.example/phish"}
    assert_refused(client, guarded.key, data, 400, "INVALID_NEXT", message, "_next", Origin=SITE)


def test_the_forms_redirect_must_be_inside_its_allowed_domains(app):
    from formrelay.services import forms

    form = make_form(db.session, redirect_url="https://elsewhere.example/thanks")
    with pytest.raises(InvalidInput, match=r"must point to one of the form's allowed domains"):
        spam.update_spam_settings(db.session, form, spam.SpamChanges(allowed_domains="example.org"))
    db.session.rollback()
    form = db.session.get(Form, form.id)
    assert form.allowed_domains == []
    forms.update_form(db.session, form, forms.FormChanges(redirect_url=""))
    spam.update_spam_settings(db.session, form, spam.SpamChanges(allowed_domains="example.org"))
    with pytest.raises(InvalidInput, match="allowed domains"):
        forms.update_form(db.session, form, forms.FormChanges(redirect_url="https://evil.example/"))
    forms.update_form(db.session, form, forms.FormChanges(redirect_url="https://example.org/ok"))
    assert form.redirect_url == "https://example.org/ok"


# -- _cc --------------------------------------------------------------------------------------
def test_cc_is_refused_naming_the_field_unless_the_owner_allows_it(client, app):
    form = make_form(db.session)
    assert form.allow_cc is False  # new forms: off
    message = (
        "This form does not send copies to other addresses: remove the _cc field, or have "
        "the form's owner allow it."
    )
    data = {"message": "hi", "_cc": "victim@example.com"}
    assert_refused(client, form.key, data, 400, "CC_NOT_ALLOWED", message, "_cc")
    # A blank _cc (a template's empty hidden field) asks for nothing.
    assert_in_inbox(client, form.key, {"message": "hi", "_cc": ""})

    spam.update_spam_settings(db.session, form, spam.SpamChanges(allow_cc=True))
    db.session.commit()
    [a, _] = assert_accepted(client, form.key, data)
    assert [d.cc for d in deliveries_of(a.id)] == [["victim@example.com"]]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path) -> Iterator[str]:
    """An empty database of the test's own, to migrate step by step."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    from ..conftest import NoPostgres, ScratchPostgresDatabase

    try:
        scratch = ScratchPostgresDatabase()
    except NoPostgres as exc:
        pytest.skip(str(exc))
    try:
        yield scratch.url
    finally:
        scratch.drop()


def test_the_migration_turns_cc_off_for_existing_forms(empty_database, tmp_path):
    """A database at 0005 with a form and a submission, upgraded: the form's _cc is off, its
    lists empty, its submission kept. Downgraded again, the submission is still there."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect, text

    from formrelay import create_app

    app = create_app(
        {"database_url": empty_database, "instance_path": tmp_path / "i", "secret_key": "x"}
    )
    with app.app_context():
        upgrade(revision="0005")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (email, role_id, created_at, disabled, timezone, "
                    "session_version) SELECT 'o@example.com', id, '2026-01-01', false, 'UTC', 1 "
                    "FROM roles WHERE name = 'admin'"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO forms (key, name, owner_id, enabled, store_only, created_at) "
                    "SELECT 'oldform', 'Old', id, true, false, '2026-01-01' FROM users"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO submissions (form_id, created_at, fields, cc, is_spam) "
                    "SELECT id, '2026-01-01 10:00:00', '[[\"m\", \"hi\"]]', '[]', false "
                    "FROM forms"
                )
            )

        def submissions() -> int:
            with db.engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM submissions")).scalar_one())

        upgrade()
        assert submissions() == 1
        form = db.session.scalar(select(Form).where(Form.key == "oldform"))
        assert form is not None
        assert (form.allow_cc, form.allowed_domains, form.honeypot, form.captcha_provider) == (
            False,
            [],
            "_gotcha",
            None,
        )
        assert (form.blocked_words, form.blocked_addresses, form.captcha_fail_open) == (
            [],
            [],
            True,
        )
        db.session.remove()
        downgrade(revision="0005")
        assert submissions() == 1
        columns = {c["name"] for c in inspect(db.engine).get_columns("forms")}
        assert not {"allow_cc", "honeypot", "allowed_domains"} & columns
        upgrade()
        db.engine.dispose()


# -- honeypot -----------------------------------------------------------------------------------
def test_the_honeypot_field_name_is_the_forms_own(client, app):
    form = make_form(db.session, honeypot="website")
    assert_kept_as_spam(
        client, form.key, {"message": "hi", "website": "http://spam"}, "honeypot field was filled"
    )
    assert "website" not in dict(stored()[-1].fields)
    assert_in_inbox(client, form.key, {"message": "hi", "website": ""})
    assert "website" not in dict(stored()[-1].fields)
    # _gotcha is still a honeypot, as Formspree's snippets have it.
    assert_kept_as_spam(
        client, form.key, {"message": "hi", "_gotcha": "x"}, "honeypot field was filled"
    )


# -- content rules ----------------------------------------------------------------------------
def test_more_links_than_allowed_is_kept_as_spam(client, app):
    form = make_form(db.session, max_links=1)
    assert_in_inbox(client, form.key, {"message": "see https://example.org"})
    assert_kept_as_spam(
        client,
        form.key,
        {"message": "http://a.example and www.b.example", "site": "https://c.example"},
        "3 links (at most 1 allowed)",
    )


def test_max_links_zero_allows_none(client, app):
    form = make_form(db.session, max_links=0)
    assert_in_inbox(client, form.key, {"message": "no links here"})
    assert_kept_as_spam(client, form.key, {"m": "HTTPS://X.EXAMPLE"}, "1 links (at most 0 allowed)")


def test_a_blocked_word_is_kept_as_spam_matching_whole_words_in_any_case(client, app):
    form = make_form(db.session, blocked_words=["casino", "cheap pills"])
    assert_in_inbox(client, form.key, {"message": "the casinos nearby; pills are cheap"})
    assert_kept_as_spam(
        client, form.key, {"message": "Best CASINO!"}, "contains a blocked word (casino)"
    )
    assert_kept_as_spam(
        client, form.key, {"message": "buy cheap pills"}, "contains a blocked word (cheap pills)"
    )


def test_a_blocked_sender_is_kept_as_spam(client, app):
    form = make_form(db.session, blocked_senders=["bad@example.com", "@spam.example"])
    assert_in_inbox(client, form.key, {"email": "good@example.com", "message": "hi"})
    assert_kept_as_spam(
        client,
        form.key,
        {"email": "Bad@Example.com", "message": "hi"},
        "from a blocked sender (Bad@Example.com)",
    )
    assert_kept_as_spam(
        client,
        form.key,
        {"_replyto": "anyone@spam.example", "message": "hi"},
        "from a blocked sender (anyone@spam.example)",
    )


@pytest.mark.parametrize(
    ("blocked", "address", "spam_expected"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.0/8"], "127.0.0.1", True),
        (["10.0.0.0/8"], "127.0.0.1", False),
        (["::1"], "::1", True),
        (["2001:db8::/32"], "::1", False),
    ],
)
def test_a_blocked_client_address_or_range_is_kept_as_spam(
    client, app, blocked, address, spam_expected
):
    form = make_form(db.session, blocked_addresses=blocked)
    data = {"message": "hi"}
    environ = {"REMOTE_ADDR": address}
    r = client.post(f"/f/{form.key}", json=data, environ_base=environ)
    assert (r.status_code, r.json["ok"]) == (200, True)
    r = client.post(f"/f/{form.key}", data=data, environ_base=environ)
    assert r.status_code == 303
    kept = stored()
    expected = (
        (True, f"sent from a blocked address ({address})") if spam_expected else (False, None)
    )
    assert [(s.is_spam, s.spam_reason) for s in kept] == [expected] * 2


def test_too_soon_after_the_page_loaded_is_kept_as_spam(client, app):
    form = make_form(db.session, min_seconds=3)
    now = time.time()
    fresh = spam.sign_page_load("test-secret", now)
    old = spam.sign_page_load("test-secret", now - 10)
    forged = spam.sign_page_load("another-secret", now - 10)
    kept = assert_accepted(client, form.key, {"message": "hi", "_formrelay": fresh})
    assert all(s.is_spam for s in kept)
    assert kept[0].spam_reason.startswith("sent 0.") and kept[0].spam_reason.endswith(
        " s after the page loaded (at least 3 s expected)"
    )
    assert_in_inbox(client, form.key, {"message": "hi", "_formrelay": old})
    assert "_formrelay" not in dict(stored()[-1].fields)
    # Without formrelay.js there is no page-load time to judge by.
    assert_in_inbox(client, form.key, {"message": "hi"})
    assert_kept_as_spam(
        client,
        form.key,
        {"message": "hi", "_formrelay": forged},
        "its page-load time was not signed by formrelay.js",
    )


def test_spam_kept_by_a_rule_is_delivered_by_not_spam(client, app):
    form = make_form(db.session, blocked_words=["casino"])
    post_json(client, form.key, {"message": "casino"})
    [kept] = stored()
    assert kept.is_spam
    created = inbox.mark_spam(db.session, kept, False)
    db.session.commit()
    assert [(d.target, d.status) for d in created] == [
        ("owner@example.com", DeliveryStatus.PENDING)
    ]


# -- the settings themselves -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (spam.SpamChanges(allowed_domains="exa mple.org"), "is not a domain name"),
        (spam.SpamChanges(rate_limit="lots"), "is not a rate limit"),
        (spam.SpamChanges(captcha_provider="recaptcha"), "must be one of"),
        (spam.SpamChanges(captcha_provider="turnstile"), "needs its secret key"),
        (spam.SpamChanges(captcha_threshold=1.5), "from 0.0 to 1.0"),
        (spam.SpamChanges(honeypot="my field"), "cannot be a honeypot field name"),
        (spam.SpamChanges(honeypot="email"), "cannot be a honeypot field name"),
        (spam.SpamChanges(blocked_senders="not-an-address"), "is not an e-mail address"),
        (spam.SpamChanges(blocked_addresses="10.0.0.300"), "is not an IP address or range"),
        (spam.SpamChanges(min_seconds=7200), "at most 3600 seconds"),
    ],
)
def test_a_bad_setting_is_refused_and_nothing_changes(app, changes, message):
    form = make_form(db.session)
    with pytest.raises(InvalidInput, match=message):
        spam.update_spam_settings(db.session, form, changes)


def test_settings_are_normalised(app):
    form = make_form(db.session)
    changed = spam.update_spam_settings(
        db.session,
        form,
        spam.SpamChanges(
            allowed_domains="Example.ORG, *.Bücher.example\nhttps://www.example.org/contact",
            blocked_senders="*@Spam.Example, Bad@Example.com",
            blocked_addresses="203.0.113.7, 198.51.100.0/24, 2001:db8::1",
            blocked_words="Casino, casino,  viagra ",
            rate_limit=" 5/minute;100/day ",
            captcha_provider="turnstile",
            captcha_secret="s3cret",
        ),
    )
    assert changed == [
        "allowed-domains",
        "rate-limit",
        "captcha-provider",
        "captcha-secret",
        "blocked-words",
        "blocked-senders",
        "blocked-addresses",
    ]
    assert form.allowed_domains == ["example.org", "*.xn--bcher-kva.example", "www.example.org"]
    assert form.blocked_senders == ["@spam.example", "bad@example.com"]
    assert form.blocked_addresses == ["203.0.113.7/32", "198.51.100.0/24", "2001:db8::1/128"]
    assert form.blocked_words == ["casino", "viagra"]
    assert form.rate_limit == "5/minute;100/day"
