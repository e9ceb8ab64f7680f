"""CAPTCHA on POST /f/<key>: each provider verified server-side against a local fake of its
siteverify endpoint, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from formrelay.extensions import db
from formrelay.models import Delivery

from ..factories import make_form
from ..providers import FakeProvider
from .shapes import BROWSER, assert_accepted, assert_refused, post_json, stored

SITE = "https://www.example.org"
# provider -> (the widget's field, what its siteverify says for a good token)
PROVIDERS = {
    "turnstile": ("cf-turnstile-response", {"success": True, "hostname": "www.example.org"}),
    "hcaptcha": ("h-captcha-response", {"success": True, "hostname": "www.example.org"}),
    "recaptcha-v2": ("g-recaptcha-response", {"success": True, "hostname": "www.example.org"}),
    "recaptcha-v3": (
        "g-recaptcha-response",
        {"success": True, "hostname": "www.example.org", "score": 0.9, "action": "contact"},
    ),
}


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider().start()
    yield fake
    fake.stop()


@pytest.fixture
def app_config(app_config, provider):
    return {
        **app_config,
        "turnstile_verify_url": provider.url,
        "hcaptcha_verify_url": provider.url,
        "recaptcha_verify_url": provider.url,
        "captcha_timeout": 0.5,
    }


def captcha_form(provider_name: str, **settings):
    return make_form(
        db.session,
        captcha_provider=provider_name,
        captcha_secret="form-secret",
        captcha_action="contact" if provider_name == "recaptcha-v3" else None,
        **settings,
    )


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_solved_captcha_is_accepted_and_its_token_not_stored(client, provider, name):
    field, good = PROVIDERS[name]
    provider.answers = {"tok-json": good, "tok-html": good}
    form = captcha_form(name)
    r = post_json(client, form.key, {"message": "hi", field: "tok-json"}, Origin=SITE)
    assert (r.status_code, r.json["ok"]) == (200, True)
    r = client.post(f"/f/{form.key}", data={"message": "hi", field: "tok-html"})
    assert r.status_code == 303
    kept = stored()
    assert [(s.is_spam, s.fields) for s in kept] == [(False, [["message", "hi"]])] * 2
    # The secret, the token and the client's address went to the provider.
    assert provider.requests == [
        {"secret": "form-secret", "response": "tok-json", "remoteip": "127.0.0.1"},
        {"secret": "form-secret", "response": "tok-html", "remoteip": "127.0.0.1"},
    ]


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_missing_token_is_refused_without_asking_the_provider(client, provider, name):
    field, _ = PROVIDERS[name]
    form = captcha_form(name)
    message = "Complete the CAPTCHA before sending the form."
    assert_refused(client, form.key, {"message": "hi"}, 400, "CAPTCHA_MISSING", message)
    assert_refused(client, form.key, {"message": "hi", field: " "}, 400, "CAPTCHA_MISSING", message)
    assert provider.requests == []


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_token_the_provider_refuses_is_refused(client, provider, name):
    field, _ = PROVIDERS[name]
    form = captcha_form(name)
    message = "CAPTCHA verification failed: the CAPTCHA was not solved."
    # Two tokens: the JSON and the browser post each send their own.
    for token in ("bad-1", "bad-2"):
        r = post_json(client, form.key, {"message": "hi", field: token})
        assert (r.status_code, r.json["errors"]) == (
            400,
            [{"code": "CAPTCHA_FAILED", "message": message}],
        )
    assert stored() == []


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_token_solved_on_another_site_is_refused_when_domains_are_set(client, provider, name):
    field, good = PROVIDERS[name]
    provider.default = {**good, "hostname": "evil.example"}
    form = captcha_form(name, allowed_domains=["www.example.org"])
    message = "CAPTCHA verification failed: the CAPTCHA was solved on another site (evil.example)."
    assert_refused(
        client,
        form.key,
        {"message": "hi", field: "t1"},
        400,
        "CAPTCHA_FAILED",
        message,
        html_data={"message": "hi", field: "t2"},
        Origin=SITE,
    )


def test_another_sites_hostname_is_fine_without_allowed_domains(client, provider):
    field, good = PROVIDERS["turnstile"]
    provider.default = {**good, "hostname": "anywhere.example"}
    form = captcha_form("turnstile")
    kept = assert_accepted(
        client, form.key, {"message": "hi", field: "t1"}, {field: "t2", "m": "x"}
    )
    assert [s.is_spam for s in kept] == [False, False]


def test_recaptcha_v3_refuses_a_low_score_and_the_wrong_action(client, provider):
    field, good = PROVIDERS["recaptcha-v3"]
    form = captcha_form("recaptcha-v3", captcha_threshold=0.7)
    provider.answers = {
        "low": {**good, "score": 0.3},
        "edge": {**good, "score": 0.7},
        "other-action": {**good, "action": "login"},
    }
    r = post_json(client, form.key, {"message": "hi", field: "low"})
    assert r.json["errors"] == [
        {
            "code": "CAPTCHA_FAILED",
            "message": "CAPTCHA verification failed: the CAPTCHA judged this submission automated.",
        }
    ]
    r = post_json(client, form.key, {"message": "hi", field: "other-action"})
    assert r.json["errors"][0]["message"] == (
        "CAPTCHA verification failed: the CAPTCHA answer is for another action."
    )
    r = post_json(client, form.key, {"message": "hi", field: "edge"})
    assert (r.status_code, len(stored())) == (200, 1)


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_replayed_token_is_refused_without_asking_the_provider(client, provider, name):
    field, good = PROVIDERS[name]
    provider.default = good  # a provider that would (wrongly) accept it twice
    form = captcha_form(name)
    assert post_json(client, form.key, {"message": "hi", field: "once"}).status_code == 200
    message = (
        "CAPTCHA verification failed: this CAPTCHA answer was used already; complete the "
        "CAPTCHA again."
    )
    assert_refused(
        client, form.key, {"message": "hi", field: "once"}, 400, "CAPTCHA_FAILED", message
    )
    assert len(provider.requests) == 1


def test_a_slow_provider_fails_open_keeping_the_submission_as_spam(client, provider):
    field, good = PROVIDERS["hcaptcha"]
    provider.default, provider.delay = good, 1.5  # past the 0.5 s timeout of these tests
    form = captcha_form("hcaptcha")
    kept = assert_accepted(
        client, form.key, {"message": "hi", field: "t1"}, {field: "t2", "m": "x"}
    )
    reason = "not verified: the hcaptcha CAPTCHA service did not answer"
    assert [(s.is_spam, s.spam_reason) for s in kept] == [(True, reason)] * 2
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0


@pytest.mark.parametrize("unreachable", [True, False])
def test_a_form_that_fails_closed_answers_503_and_stores_nothing(
    client, provider, app, unreachable
):
    field, good = PROVIDERS["turnstile"]
    if unreachable:
        provider.stop()
    else:
        provider.default, provider.delay = good, 1.5
    form = captcha_form("turnstile", captcha_fail_open=False)
    message = (
        "The CAPTCHA cannot be checked right now; nothing was stored. Please try again in a minute."
    )
    r = post_json(client, form.key, {"message": "hi", field: "t"})
    # 30 s, or later when Flask-Limiter's window ends later (it sets the latest of both).
    assert 30 <= int(r.headers["Retry-After"]) <= 60
    assert (r.status_code, r.json["errors"]) == (
        503,
        [{"code": "CAPTCHA_UNAVAILABLE", "message": message}],
    )
    r = client.post(
        f"/f/{form.key}", data={"message": "hi", field: "t2"}, headers={"Accept": BROWSER}
    )
    assert (r.status_code, r.mimetype) == (503, "text/html")
    assert message in r.text and "Retry-After" in r.headers
    assert stored() == []
    if unreachable:  # fixture teardown stops it again
        provider.server = type(
            "Stopped", (), {"shutdown": lambda s: None, "server_close": lambda s: None}
        )()


def test_a_provider_error_page_counts_as_away(client, provider):
    field, _ = PROVIDERS["turnstile"]
    provider.status, provider.default = 500, "<html>oops</html>"
    form = captcha_form("turnstile")
    r = post_json(client, form.key, {"message": "hi", field: "t"})
    assert r.status_code == 200
    assert stored()[0].is_spam


def test_a_retry_after_the_provider_was_away_may_carry_the_same_token(client, provider):
    """formrelay.js resends the same form after a 503: its token was never checked."""
    field, good = PROVIDERS["turnstile"]
    provider.default, provider.delay = good, 1.5
    form = captcha_form("turnstile", captcha_fail_open=False)
    assert post_json(client, form.key, {"message": "hi", field: "same"}).status_code == 503
    provider.delay = 0
    r = post_json(client, form.key, {"message": "hi", field: "same"})
    assert (r.status_code, len(stored())) == (200, 1)
    # Now it was used.
    assert post_json(client, form.key, {"message": "hi", field: "same"}).status_code == 400
