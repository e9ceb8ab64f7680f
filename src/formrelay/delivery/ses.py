"""Amazon SES through boto3's sesv2 SendEmail with raw content."""

from __future__ import annotations

from email.message import Message
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..settings import Settings
from . import DeliveryFailed, SendResult
from .message import deliverable_recipients

# Errors after which the same message can never be accepted.
PERMANENT_ERRORS = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})


class SESBackend:
    def __init__(self, client: Any, *, configuration_set: str = "") -> None:
        self.client = client
        self.configuration_set = configuration_set

    @classmethod
    def from_settings(cls, s: Settings) -> SESBackend:
        # SendEmail has no idempotency key: a retried timeout can send twice, so botocore
        # does not retry and the outbox owns retries.
        config = Config(
            retries={"total_max_attempts": 1},
            connect_timeout=s.mail_timeout,
            read_timeout=s.mail_timeout,
        )
        credentials: dict[str, Any] = {}
        if s.aws_access_key_id and s.aws_secret_access_key:
            credentials = {
                "aws_access_key_id": s.aws_access_key_id,
                "aws_secret_access_key": s.aws_secret_access_key,
            }
        client = boto3.session.Session().client(
            "sesv2",
            region_name=s.aws_region,
            endpoint_url=s.aws_endpoint_url or None,
            config=config,
            **credentials,
        )
        return cls(client, configuration_set=s.ses_configuration_set)

    def send(self, message: Message) -> SendResult:
        # The builder writes addresses ASCII (IDNA domains); SES takes nothing else.
        recipients = deliverable_recipients(message, smtputf8=False, via="SES")
        request: dict[str, Any] = {
            "FromEmailAddress": str(message["From"]),
            "Destination": {"ToAddresses": recipients},
            "Content": {"Raw": {"Data": message.as_bytes()}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            response = self.client.send_email(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            text = exc.response.get("Error", {}).get("Message", str(exc))
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

    def close(self) -> None:
        self.client.close()
