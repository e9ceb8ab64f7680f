"""Amazon SES through boto3's sesv2 SendEmail with raw content."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from email.message import Message
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..settings import Settings
from . import DeliveryDeferred, DeliveryFailed, SendResult
from .message import deliverable_recipients

log = logging.getLogger("formrelay.worker")
# SES's lowest MaxSendRate (the sandbox's): the rate used until the account has answered.
SANDBOX_RATE = 1.0

# Errors after which the same message can never be accepted.
PERMANENT_ERRORS = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})
# SES refusing for its limits: the account's send rate or its 24-hour quota (sesv2 answers
# TooManyRequestsException or LimitExceededException; the v1 API and SMTP say Throttling).
LIMIT_ERRORS = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"}
)
# After a rate refusal every worker holds its sends this long, and the message waits
# a little more (jittered, so that the workers do not come back at one instant).
RATE_PAUSE_SECONDS = 1.0


def make_client(s: Settings, *, timeout: float | None = None) -> Any:
    """An sesv2 client for these settings (region, endpoint, keys), without botocore's retries.

    SendEmail has no idempotency key: a retried timeout can send twice, so botocore does
    not retry and the outbox owns retries.
    """
    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=timeout or s.mail_timeout,
        read_timeout=timeout or s.mail_timeout,
    )
    return boto3.session.Session().client(
        "sesv2",
        region_name=s.aws_region,
        endpoint_url=s.aws_endpoint_url or None,
        config=config,
        **credentials(s),
    )


def credentials(s: Settings) -> dict[str, Any]:
    """The keys set in the settings, for a boto3 client; none: boto3's own chain."""
    if s.aws_access_key_id and s.aws_secret_access_key:
        return {
            "aws_access_key_id": s.aws_access_key_id,
            "aws_secret_access_key": s.aws_secret_access_key,
        }
    return {}


def limit_refusal(code: str, text: str, *, quota_retry_seconds: float) -> DeliveryDeferred:
    """What a refusal for SES's limits means for the outbox: wait and try again."""
    if "quota" in text.lower() or "daily" in text.lower():
        return DeliveryDeferred(
            f"SES {code}: {text} (the 24-hour quota is used up: trying again later)",
            retry_after=quota_retry_seconds * (0.9 + 0.2 * random.random()),
        )
    return DeliveryDeferred(
        f"SES {code}: {text} (sending faster than the account's rate: trying again shortly)",
        retry_after=RATE_PAUSE_SECONDS * (1.5 + random.random()),
        pause_all=RATE_PAUSE_SECONDS,
    )


class SESBackend:
    def __init__(
        self, client: Any, *, configuration_set: str = "", quota_retry_seconds: float = 1800.0
    ) -> None:
        self.client = client
        self.configuration_set = configuration_set
        self.quota_retry_seconds = quota_retry_seconds

    @classmethod
    def from_settings(cls, s: Settings) -> SESBackend:
        return cls(
            make_client(s),
            configuration_set=s.ses_configuration_set,
            quota_retry_seconds=s.ses_quota_retry_seconds,
        )

    def send(self, message: Message) -> SendResult:
        return self.send_tagged(message, {})

    def send_tagged(self, message: Message, tags: dict[str, str]) -> SendResult:
        """Send with the configuration set and message tags, which SES returns with each
        Bounce, Complaint and Delivery event (how /hooks/ses finds the delivery)."""
        # The builder writes addresses ASCII (IDNA domains); SES takes nothing else.
        recipients = deliverable_recipients(message, smtputf8=False, via="SES")
        request: dict[str, Any] = {
            "FromEmailAddress": str(message["From"]),
            "Destination": {"ToAddresses": recipients},
            "Content": {"Raw": {"Data": message.as_bytes()}},
        }
        if tags:
            request["EmailTags"] = [{"Name": k, "Value": v} for k, v in tags.items()]
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            response = self.client.send_email(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            text = exc.response.get("Error", {}).get("Message", str(exc))
            if code in LIMIT_ERRORS:
                raise limit_refusal(
                    code, text, quota_retry_seconds=self.quota_retry_seconds
                ) from exc
            raise DeliveryFailed(
                f"SES {code}: {text}", retryable=code not in PERMANENT_ERRORS
            ) from exc
        except BotoCoreError as exc:  # connection, timeout, credentials
            raise DeliveryFailed(f"SES unreachable: {exc}", retryable=True) from exc
        return SendResult(response.get("MessageId"))

    def check(self) -> str:
        """Ask SES for the account (sesv2 GetAccount): credentials, region and endpoint work,
        and sending is enabled. Raises DeliveryFailed."""
        try:
            account = self.client.get_account()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            text = exc.response.get("Error", {}).get("Message", str(exc))
            raise DeliveryFailed(f"SES {code}: {text}", retryable=True) from exc
        except BotoCoreError as exc:
            raise DeliveryFailed(f"SES unreachable: {exc}", retryable=True) from exc
        if not account.get("SendingEnabled", False):
            raise DeliveryFailed(
                "SES answered, but sending is paused for this account "
                f"(enforcement status: {account.get('EnforcementStatus', 'unknown')}).",
                retryable=True,
            )
        quota = account.get("SendQuota", {})
        sandbox = (
            "in the sandbox: only verified addresses receive mail"
            if not account.get("ProductionAccessEnabled", False)
            else "production access"
        )
        return (
            f"SES answered: sending enabled, {sandbox}; sent "
            f"{quota.get('SentLast24Hours', 0):g} of {quota.get('Max24HourSend', 0):g} in the "
            f"last 24 hours, at most {quota.get('MaxSendRate', 0):g} a second."
        )

    def max_send_rate(self) -> float:
        """The account's MaxSendRate (recipients a second). Raises DeliveryFailed."""
        try:
            account = self.client.get_account()
        except (ClientError, BotoCoreError) as exc:
            raise DeliveryFailed(f"SES GetAccount failed: {exc}", retryable=True) from exc
        return float(account.get("SendQuota", {}).get("MaxSendRate", 0.0))

    def close(self) -> None:
        self.client.close()


def send_rate_source(s: Settings) -> Callable[[], float]:
    """What the workers' pacing asks for the rate: SES's MaxSendRate (read anew at every
    call), or FORMRELAY_SEND_RATE when that is set and lower. While SES cannot be asked
    (down, or keys without ses:GetAccount), the last rate it gave; before it ever answered,
    FORMRELAY_SEND_RATE, else the sandbox's 1 a second."""
    known: list[float] = []

    def read() -> float:
        backend = SESBackend.from_settings(s)
        try:
            rate = backend.max_send_rate()
            if rate > 0:
                known[:] = [rate]
        except DeliveryFailed as exc:
            fallback = known[0] if known else s.send_rate or SANDBOX_RATE
            log.warning("SES MaxSendRate unknown, pacing at %g a second: %s", fallback, exc)
        finally:
            backend.close()
        if not known:
            return s.send_rate or SANDBOX_RATE
        return min(known[0], s.send_rate) if s.send_rate else known[0]

    return read
