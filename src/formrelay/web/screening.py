"""The public endpoint's spam and abuse checks, between the parsed body and group commit.

web/public.py takes `limits_of(key)` (what the post counts in, which group commit counts
with its batch, or `count_now` for a post that does not reach it), then calls
`prepare(key, fields, meta)` where it used to call prepare_submission. The rules
themselves live in services/spam.py, services/captcha.py and services/akismet.py; this
module reads the request for them.
"""

from __future__ import annotations

import dataclasses
import time

from flask import Flask, current_app, request

from ..extensions import db
from ..ingest import group_commit
from ..services import akismet, rate_limits, spam
from ..services.captcha import (
    USED_TOKEN_SECONDS,
    CaptchaCheck,
    CaptchaUnavailable,
    verify_captcha,
)
from ..services.counters import SharedCounters
from ..services.errors import SubmissionRejected
from ..services.submissions import PAGE_LOAD, PreparedSubmission, SubmissionMeta, prepare_submission
from ..settings import Settings, get_settings

_POLICIES = "formrelay.policies"
_COUNTERS = "formrelay.counters"
VERIFY_URLS = {
    "turnstile": "turnstile_verify_url",
    "hcaptcha": "hcaptcha_verify_url",
    "recaptcha-v2": "recaptcha_verify_url",
    "recaptcha-v3": "recaptcha_verify_url",
}


def init_app(app: Flask, settings: Settings) -> None:
    """The app's cache of form rules and its shared counters (used CAPTCHA tokens)."""

    def load(key: str) -> spam.FormPolicy | None:
        try:
            return spam.load_policy(db.session(), key)
        finally:
            db.session.rollback()  # no transaction kept open by a read on the hot path

    app.extensions[_POLICIES] = spam.PolicyCache(load)
    # The same counters as group commit's ceilings: one connection, one outage logged.
    ceilings = group_commit(app).ceilings
    app.extensions[_COUNTERS] = (
        ceilings.counters
        if ceilings is not None and isinstance(ceilings.counters, SharedCounters)
        else SharedCounters(settings.ratelimit_storage_uri)
    )


def counters(app: Flask | None = None) -> SharedCounters:
    found: SharedCounters = (app or current_app).extensions[_COUNTERS]
    return found


def policy_for(key: str) -> spam.FormPolicy | None:
    """The rules of the form with this key (cached for a few seconds); None when none."""
    cache: spam.PolicyCache = current_app.extensions[_POLICIES]
    return cache.get(key)


# -- rate limits ---------------------------------------------------------------------------------
def client_address() -> str:
    # The socket's address, or ProxyFix's when FORMRELAY_TRUSTED_PROXIES says to believe it.
    return request.remote_addr or "unknown"


def limits_of(key: str) -> rate_limits.Counted:
    """What this submission counts in: its form's limit per client address and the
    address's limit over all forms (services/rate_limits.py)."""
    policy = policy_for(key)
    config = get_settings()
    return rate_limits.counted(
        client_address(),
        [
            (f"form:{key}", (policy and policy.rate_limit) or config.rate_limit),
            ("all-forms", config.rate_limit_global),
        ],
    )


def count_now(submission: rate_limits.Counted) -> None:
    """Count it here, in one round trip, for a submission that will not reach group
    commit (which counts the others with their batch). Raises RateLimited: 429
    RATE_LIMITED with Retry-After (web/errors.py)."""
    [limited] = rate_limits.check_many(counters(), [submission])
    if limited is not None:
        raise limited


# -- the checks -----------------------------------------------------------------------------------
class _UsedTokens:
    def first_use(self, digest: str) -> bool:
        return counters().incr(f"captcha:{digest}", USED_TOKEN_SECONDS) == 1

    def forget(self, digest: str) -> None:
        counters().clear(f"captcha:{digest}")


def prepare(
    key: str, fields: list[tuple[str, str]], meta: SubmissionMeta, *, has_files: bool = False
) -> PreparedSubmission:
    """The submission as group commit stores it, after every rule of its form: refused
    with the rule's code (SubmissionRejected), or marked as suspected spam with its reason
    (keeping its special fields and files, as any submission: `has_files` says it has some).

    An unknown form gets no rules: group commit answers FORM_NOT_FOUND.
    """
    policy = policy_for(key) or spam.NO_FORM
    spam.check_origin(policy, meta.origin, meta.referrer)
    prepared = prepare_submission(
        fields, meta, honeypot=policy.honeypot, allow_cc=policy.allow_cc, has_files=has_files
    )
    if prepared.spam_reason is not None:  # the honeypot: nothing else to learn
        if not spam.next_allowed(policy, prepared.next_url):  # nor a way off the form's sites
            return dataclasses.replace(prepared, next_url=None)
        return prepared
    spam.check_next(policy, prepared.next_url)
    reason = _captcha_reason(policy, fields, meta)
    config = get_settings()
    loaded = _seconds_since_load(policy, fields, config)
    if reason is None:
        reason = spam.content_reason(
            policy,
            prepared.fields,
            reply_to=prepared.reply_to,
            remote_addr=meta.remote_addr,
            seconds_since_load=loaded,
        )
    if reason is None and policy.min_seconds and _stamp(fields) and loaded is None:
        reason = "its page-load time was not signed by formrelay.js"
    ask_akismet = policy.akismet and config.akismet_api_key and policy is not spam.NO_FORM
    if (
        reason is None
        and ask_akismet
        and akismet.akismet_says_spam(
            url=config.akismet_url,
            api_key=config.akismet_api_key,
            blog=config.base_url,
            fields=prepared.fields,
            reply_to=prepared.reply_to,
            remote_addr=meta.remote_addr,
            user_agent=meta.user_agent,
            referrer=meta.referrer,
            timeout=config.captcha_timeout,
        )
    ):
        reason = "Akismet says spam"
    return dataclasses.replace(prepared, spam_reason=reason) if reason else prepared


def _captcha_reason(
    policy: spam.FormPolicy, fields: list[tuple[str, str]], meta: SubmissionMeta
) -> str | None:
    """Verify the form's CAPTCHA; the spam reason when its provider is away and the form
    fails open. Raises SubmissionRejected (CAPTCHA_MISSING, CAPTCHA_FAILED, or 503
    CAPTCHA_UNAVAILABLE when the form fails closed)."""
    name = policy.captcha_field
    if not policy.captcha_provider or not name:
        return None
    config = get_settings()
    token = next((value for field, value in fields if field == name and value.strip()), "")
    check = CaptchaCheck(
        provider=policy.captcha_provider,
        secret=policy.captcha_secret,
        verify_url=getattr(config, VERIFY_URLS[policy.captcha_provider]),
        timeout=config.captcha_timeout,
        allowed_domains=policy.allowed_domains,
        threshold=policy.captcha_threshold,
        action=policy.captcha_action,
    )
    try:
        verify_captcha(check, token, meta.remote_addr, _UsedTokens())
    except CaptchaUnavailable:
        if policy.captcha_fail_open:
            return f"not verified: the {policy.captcha_provider} CAPTCHA service did not answer"
        raise SubmissionRejected(
            "CAPTCHA_UNAVAILABLE",
            "The CAPTCHA cannot be checked right now; nothing was stored. Please try again "
            "in a minute.",
        ) from None
    return None


def _stamp(fields: list[tuple[str, str]]) -> str:
    return next((value for name, value in fields if name == PAGE_LOAD and value.strip()), "")


def _seconds_since_load(
    policy: spam.FormPolicy, fields: list[tuple[str, str]], config: Settings
) -> float | None:
    if not policy.min_seconds:
        return None
    stamp = _stamp(fields)
    if not stamp:
        return None
    return spam.seconds_since_load(config.secret_key, stamp, time.time())


def page_load_stamp() -> str:
    """A signed "the page loaded now", for formrelay.js."""
    return spam.sign_page_load(get_settings().secret_key, time.time())
