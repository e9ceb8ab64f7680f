"""CAPTCHA verification against the provider's siteverify endpoint (Turnstile, hCaptcha,
reCAPTCHA v2 and v3), server-side, over plain HTTPS with the standard library.

All four speak the same protocol: a form POST of `secret`, `response` and `remoteip`,
answered by JSON with `success`, `hostname` and, for reCAPTCHA v3, `score` and `action`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

from .errors import SubmissionRejected
from .urls import host_allowed

log = logging.getLogger("formrelay.captcha")

USED_TOKEN_SECONDS = 600  # longer than any provider keeps a token valid (2 to 5 minutes)


class CaptchaUnavailable(Exception):
    """The provider could not be asked (unreachable, slow, or an answer that is not JSON)."""


class UsedTokens(Protocol):
    def first_use(self, digest: str) -> bool:
        """Record the token's digest; False when it was recorded before (a replay)."""
        ...

    def forget(self, digest: str) -> None:
        """Unrecord a token that was never checked (the provider was away): the visitor's
        retry (formrelay.js resends on a 503) carries the same one."""
        ...


@dataclass(frozen=True)
class CaptchaCheck:
    provider: str
    secret: str
    verify_url: str
    timeout: float
    allowed_domains: Sequence[str] = ()
    threshold: float = 0.5
    action: str | None = None


def verify_captcha(
    check: CaptchaCheck, token: str, remote_ip: str | None, used: UsedTokens
) -> None:
    """Verify the token with the provider. A token is good once: a replay is refused
    without asking the provider again.

    Raises SubmissionRejected CAPTCHA_MISSING (no token) or CAPTCHA_FAILED (refused by the
    provider, another site's token, a low v3 score, the wrong v3 action, a replay), and
    CaptchaUnavailable when the provider cannot answer within the timeout.
    """
    token = token.strip()
    if not token:
        raise SubmissionRejected(
            "CAPTCHA_MISSING", "Complete the CAPTCHA before sending the form.", None
        )
    digest = hashlib.sha256(token.encode()).hexdigest()
    if not used.first_use(digest):
        raise _failed("this CAPTCHA answer was used already; complete the CAPTCHA again")
    try:
        answer = _siteverify(check, token, remote_ip)
    except CaptchaUnavailable:
        used.forget(digest)
        raise
    if answer.get("success") is not True:
        codes = answer.get("error-codes")
        secret_refused = {"invalid-input-secret", "missing-input-secret"}
        if isinstance(codes, list) and secret_refused.intersection(codes):
            log.error(
                "the %s secret of a form is refused by the provider: %s", check.provider, codes
            )
        raise _failed("the CAPTCHA was not solved")
    hostname = str(answer.get("hostname") or "").lower()
    if check.allowed_domains and not (hostname and host_allowed(hostname, check.allowed_domains)):
        raise _failed(f"the CAPTCHA was solved on another site ({hostname or 'unknown'})")
    if check.provider == "recaptcha-v3":
        score = answer.get("score")
        if not isinstance(score, int | float) or score < check.threshold:
            raise _failed("the CAPTCHA judged this submission automated")
        if check.action and answer.get("action") != check.action:
            raise _failed("the CAPTCHA answer is for another action")


def _failed(why: str) -> SubmissionRejected:
    return SubmissionRejected("CAPTCHA_FAILED", f"CAPTCHA verification failed: {why}.")


def _siteverify(check: CaptchaCheck, token: str, remote_ip: str | None) -> dict[str, object]:
    fields = {"secret": check.secret, "response": token}
    if remote_ip:
        fields["remoteip"] = remote_ip
    request = urllib.request.Request(
        check.verify_url,
        data=urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=check.timeout) as response:
            document = json.loads(response.read(65536))
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        log.warning("the %s verify endpoint did not answer: %s", check.provider, exc)
        raise CaptchaUnavailable(str(exc)) from None
    if not isinstance(document, dict):
        raise CaptchaUnavailable("the answer is not a JSON object")
    return document
