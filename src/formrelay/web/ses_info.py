"""What the dashboard shows about Amazon SES, asked once per process and kept a while.

The admin status page asks SES afresh (an admin wants the truth); a form's settings page
asks only whether the account is in the sandbox and whether its recipients are verified
identities, answers kept for SANDBOX_TTL seconds so that the page stays quick. With another
mail backend, nothing is asked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from flask import Flask, current_app

from ..settings import Settings, get_settings

log = logging.getLogger("formrelay.web")
_KEY = "formrelay.ses_info"
SANDBOX_TTL = 300.0
TIMEOUT_SECONDS = 5.0
SANDBOX_ADVICE = (
    "The SES account is in the sandbox and this address is not a verified identity: SES "
    "refuses to send to it. Verify it in SES (aws sesv2 create-email-identity "
    "--email-identity ADDRESS, then follow the link SES mails), or request production "
    "access in the SES console."
)


class SESInfo:
    def __init__(self, settings: Settings) -> None:
        from ..delivery.ses import make_client  # boto3 only where SES is used
        from ..delivery.ses_account import RecipientChecker

        self.client: Any = make_client(settings, timeout=TIMEOUT_SECONDS)
        self.checker = RecipientChecker(self.client, ttl=SANDBOX_TTL)
        self._sandbox: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    def sandbox(self) -> bool:
        """Whether the account is in the sandbox. Raises SESError."""
        from ..delivery.ses_account import account_status

        now = time.monotonic()
        with self._lock:
            known = self._sandbox
        if known is not None and now - known[0] < SANDBOX_TTL:
            return known[1]
        sandbox = account_status(self.client, "").sandbox
        with self._lock:
            self._sandbox = (now, sandbox)
        return sandbox

    def unreachable_in_sandbox(self, addresses: Sequence[str]) -> set[str]:
        """Those of `addresses` SES refuses while the account is in the sandbox; none when
        it is not, or when SES cannot be asked (the page says nothing rather than fail)."""
        from ..delivery.ses_account import SESError

        try:
            if not addresses or not self.sandbox():
                return set()
            return set(self.checker.unverified(addresses))
        except SESError as exc:
            log.warning("cannot tell whether SES's sandbox reaches the recipients: %s", exc)
            return set()


def ses_info(app: Flask | None = None) -> SESInfo | None:
    """The app's SESInfo, made on first use; None unless MAIL_BACKEND=ses."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    settings = get_settings(app)
    if settings.mail_backend != "ses":
        return None
    found: SESInfo | None = app.extensions.get(_KEY)
    if found is None:
        found = app.extensions[_KEY] = SESInfo(settings)
    return found
