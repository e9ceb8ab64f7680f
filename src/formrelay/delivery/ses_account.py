"""Setting up and inspecting an Amazon SES account through its API (sesv2).

`set_up_domain` does what `formrelay ses setup` promises: the domain identity with Easy DKIM,
its custom MAIL FROM domain, the configuration set with its SNS event destination; each
step is idempotent, so running it again only reports what is still pending.
`account_status` reads what `formrelay ses status` and the admin status page show. The
DNS records and the IAM policy are plain values built here, printed by the command.
Each function takes an sesv2 client; none sends mail.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

EVENT_DESTINATION = "formrelay-sns"
EVENT_TYPES = ("BOUNCE", "COMPLAINT", "DELIVERY")
TTL = 1800


class SESError(Exception):
    """SES refused or could not be reached; the message says which call and why."""


def _call(what: str, fn: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = fn(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise SESError(f"{what}: {error.get('Code', '')}: {error.get('Message', exc)}") from exc
    except BotoCoreError as exc:
        raise SESError(f"{what}: {exc}") from exc
    return result


def _code(exc: SESError) -> str:
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


# -- DNS and IAM -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DNSRecord:
    name: str
    type: str
    value: str
    why: str

    def zone_line(self) -> str:
        value = f'"{self.value}"' if self.type == "TXT" else self.value
        if self.type in ("CNAME", "MX"):
            value = f"{value}."
        return f"{self.name}. {TTL} IN {self.type} {value}"


def dkim_records(domain: str, tokens: Iterable[str]) -> list[DNSRecord]:
    return [
        DNSRecord(
            f"{t}._domainkey.{domain}",
            "CNAME",
            f"{t}.dkim.amazonses.com",
            "Easy DKIM: SES signs your mail with the key this name points to",
        )
        for t in tokens
    ]


def mail_from_records(mail_from: str, region: str) -> list[DNSRecord]:
    return [
        DNSRecord(
            mail_from,
            "MX",
            f"10 feedback-smtp.{region}.amazonses.com",
            "bounces come back to SES through this domain",
        ),
        DNSRecord(
            mail_from,
            "TXT",
            "v=spf1 include:amazonses.com ~all",
            "SPF: SES's servers may send for this domain",
        ),
    ]


def dmarc_record(domain: str) -> DNSRecord:
    return DNSRecord(
        f"_dmarc.{domain}",
        "TXT",
        f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}",
        "DMARC: start with p=none and reports; tighten to quarantine once they look right",
    )


def iam_policy(*, region: str, account_id: str, domain: str, configuration_set: str) -> str:
    """The least-privilege policy for formrelay's credentials, as JSON.

    Sending: ses:SendEmail and ses:SendRawEmail on the domain identity and the
    configuration set only. Reading: ses:GetAccount (the worker's MaxSendRate, the status
    page) and ses:GetEmailIdentity (is a sandbox recipient verified?), which read and
    change nothing.
    """
    arn = f"arn:aws:ses:{region}:{account_id}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FormrelaySend",
                "Effect": "Allow",
                "Action": ["ses:SendEmail", "ses:SendRawEmail"],
                "Resource": [
                    f"{arn}:identity/{domain}",
                    f"{arn}:configuration-set/{configuration_set}",
                ],
            },
            {
                "Sid": "FormrelayReadLimits",
                "Effect": "Allow",
                "Action": ["ses:GetAccount"],
                "Resource": "*",
            },
            {
                "Sid": "FormrelayCheckSandboxRecipients",
                "Effect": "Allow",
                "Action": ["ses:GetEmailIdentity"],
                "Resource": f"{arn}:identity/*",
            },
        ],
    }
    return json.dumps(policy, indent=2)


# -- setup -----------------------------------------------------------------------------------------
@dataclass
class SetupReport:
    domain: str
    region: str
    identity_created: bool = False
    verified: bool = False
    dkim_status: str = ""
    dkim: list[DNSRecord] = field(default_factory=list)
    mail_from: str | None = None
    mail_from_status: str = ""
    mail_from_dns: list[DNSRecord] = field(default_factory=list)
    dmarc: DNSRecord | None = None
    configuration_set: str = ""
    configuration_set_created: bool = False
    events_topic: str | None = None
    event_destination: str = ""  # "created", "updated" or ""
    policy: str = ""
    sandbox: bool | None = None

    @property
    def pending(self) -> list[str]:
        """What is still to be done, in words an operator acts on."""
        todo: list[str] = []
        if self.dkim_status != "SUCCESS":
            todo.append(
                f"DKIM is {self.dkim_status or 'unknown'}: add the three CNAME records; SES "
                "looks for them for up to 72 hours, then the domain is verified"
            )
        elif not self.verified:
            todo.append(f"{self.domain} is not verified for sending yet")
        if self.mail_from and self.mail_from_status != "SUCCESS":
            todo.append(
                f"MAIL FROM {self.mail_from} is {self.mail_from_status or 'unknown'}: "
                "add its MX and TXT records"
            )
        if not self.events_topic:
            todo.append(
                "no SNS topic for bounces and complaints: run again with --events-topic ARN "
                "(see docs/ses.md)"
            )
        if self.sandbox:
            todo.append(
                "the account is in the sandbox: only verified addresses receive mail, 200 a "
                "day; request production access in the SES console (Account dashboard)"
            )
        return todo


def set_up_domain(
    client: Any,
    *,
    domain: str,
    region: str,
    account_id: str,
    configuration_set: str,
    mail_from: str | None = None,
    events_topic: str | None = None,
) -> SetupReport:
    """Create (or find) everything SES needs for `domain`. Raises SESError."""
    report = SetupReport(domain=domain, region=region, configuration_set=configuration_set)
    try:
        created = _call("CreateEmailIdentity", client.create_email_identity, EmailIdentity=domain)
        report.identity_created = True
    except SESError as exc:
        if _code(exc) != "AlreadyExistsException":
            raise
        created = {}
    identity = _call("GetEmailIdentity", client.get_email_identity, EmailIdentity=domain)
    dkim = identity.get("DkimAttributes") or created.get("DkimAttributes") or {}
    report.verified = bool(identity.get("VerifiedForSendingStatus"))
    report.dkim_status = str(dkim.get("Status", ""))
    report.dkim = dkim_records(domain, dkim.get("Tokens") or [])

    if mail_from:
        current = (identity.get("MailFromAttributes") or {}).get("MailFromDomain")
        if current != mail_from:
            _call(
                "PutEmailIdentityMailFromAttributes",
                client.put_email_identity_mail_from_attributes,
                EmailIdentity=domain,
                MailFromDomain=mail_from,
                BehaviorOnMxFailure="USE_DEFAULT_VALUE",
            )
            report.mail_from_status = "PENDING"
        else:
            report.mail_from_status = str(
                (identity.get("MailFromAttributes") or {}).get("MailFromDomainStatus", "")
            )
        report.mail_from = mail_from
        report.mail_from_dns = mail_from_records(mail_from, region)
    report.dmarc = dmarc_record(domain)

    try:
        _call(
            "CreateConfigurationSet",
            client.create_configuration_set,
            ConfigurationSetName=configuration_set,
        )
        report.configuration_set_created = True
    except SESError as exc:
        if _code(exc) != "AlreadyExistsException":
            raise
    if events_topic:
        destination = {
            "Enabled": True,
            "MatchingEventTypes": list(EVENT_TYPES),
            "SnsDestination": {"TopicArn": events_topic},
        }
        try:
            _call(
                "CreateConfigurationSetEventDestination",
                client.create_configuration_set_event_destination,
                ConfigurationSetName=configuration_set,
                EventDestinationName=EVENT_DESTINATION,
                EventDestination=destination,
            )
            report.event_destination = "created"
        except SESError as exc:
            if _code(exc) != "AlreadyExistsException":
                raise
            _call(
                "UpdateConfigurationSetEventDestination",
                client.update_configuration_set_event_destination,
                ConfigurationSetName=configuration_set,
                EventDestinationName=EVENT_DESTINATION,
                EventDestination=destination,
            )
            report.event_destination = "updated"
        report.events_topic = events_topic
    else:  # said before: keep it, and do not report it missing
        found = _call(
            "GetConfigurationSetEventDestinations",
            client.get_configuration_set_event_destinations,
            ConfigurationSetName=configuration_set,
        )
        for d in found.get("EventDestinations") or []:
            topic = (d.get("SnsDestination") or {}).get("TopicArn")
            if topic and d.get("Enabled", True):
                report.events_topic = str(topic)
                report.event_destination = "exists"
                break
    report.policy = iam_policy(
        region=region, account_id=account_id, domain=domain, configuration_set=configuration_set
    )
    try:
        account = _call("GetAccount", client.get_account)
        report.sandbox = not account.get("ProductionAccessEnabled", False)
    except SESError:
        report.sandbox = None
    return report


# -- status ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccountStatus:
    region: str
    sandbox: bool
    sending_enabled: bool
    enforcement_status: str
    max_24_hour_send: float
    max_send_rate: float
    sent_last_24_hours: float

    def lines(self) -> list[str]:
        access = (
            "sandbox: only verified addresses receive mail (request production access in "
            "the SES console)"
            if self.sandbox
            else "production access"
        )
        return [
            f"Account ({self.region}): {access}",
            f"Sending: {'enabled' if self.sending_enabled else 'PAUSED'}, enforcement status "
            f"{self.enforcement_status}",
            f"Quota: sent {self.sent_last_24_hours:g} of {self.max_24_hour_send:g} in the last "
            f"24 hours; at most {self.max_send_rate:g} a second",
        ]


def account_status(client: Any, region: str) -> AccountStatus:
    """The account as SES reports it (GetAccount). Raises SESError."""
    account = _call("GetAccount", client.get_account)
    quota = account.get("SendQuota") or {}
    return AccountStatus(
        region=region,
        sandbox=not account.get("ProductionAccessEnabled", False),
        sending_enabled=bool(account.get("SendingEnabled", False)),
        enforcement_status=str(account.get("EnforcementStatus", "unknown")),
        max_24_hour_send=float(quota.get("Max24HourSend", 0.0)),
        max_send_rate=float(quota.get("MaxSendRate", 0.0)),
        sent_last_24_hours=float(quota.get("SentLast24Hours", 0.0)),
    )


@dataclass(frozen=True)
class IdentityStatus:
    identity: str
    exists: bool
    verified: bool
    dkim_status: str

    def line(self) -> str:
        if not self.exists:
            return (
                f"Identity {self.identity}: not in SES; run `formrelay ses setup --domain "
                f"{self.identity}`"
            )
        state = "verified for sending" if self.verified else "NOT verified for sending"
        return f"Identity {self.identity}: {state}; DKIM {self.dkim_status or 'not set up'}"


def identity_status(client: Any, identity: str) -> IdentityStatus:
    """Verification and DKIM of one identity (a domain or an address). Raises SESError."""
    try:
        found = _call("GetEmailIdentity", client.get_email_identity, EmailIdentity=identity)
    except SESError as exc:
        if _code(exc) == "NotFoundException":
            return IdentityStatus(identity, False, False, "")
        raise
    dkim = found.get("DkimAttributes") or {}
    return IdentityStatus(
        identity, True, bool(found.get("VerifiedForSendingStatus")), str(dkim.get("Status", ""))
    )


class RecipientChecker:
    """Whether addresses may receive mail from a sandboxed account: verified themselves, or
    at a verified domain. Answers are kept for `ttl` seconds (the settings page asks on
    every view). Raises SESError."""

    def __init__(self, client: Any, ttl: float = 300.0) -> None:
        self.client = client
        self.ttl = ttl
        self._known: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def _verified(self, identity: str) -> bool:
        now = time.monotonic()
        with self._lock:
            hit = self._known.get(identity)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        verified = identity_status(self.client, identity).verified
        with self._lock:
            self._known[identity] = (now, verified)
        return verified

    def unverified(self, addresses: Sequence[str]) -> list[str]:
        """Those of `addresses` a sandboxed account cannot send to."""
        return [
            a
            for a in addresses
            if not self._verified(a.lower()) and not self._verified(a.rpartition("@")[2].lower())
        ]
