"""Amazon SNS messages, verified: signature, certificate, topic, age.

An SNS message is trusted only when all of these hold, checked before anything is stored:
- its `Type` is Notification, SubscriptionConfirmation or UnsubscribeConfirmation;
- its `TopicArn` is on the allowlist (FORMRELAY_SNS_TOPIC_ARNS);
- its `SigningCertURL` is https on a host `sns.<region>.amazonaws.com` (the port https's
  own, no user, no query), fetched with the certificate and host name verified, and the
  certificate is within its validity period;
- its `Signature` is that certificate's RSA signature (PKCS#1 v1.5) over the string to sign
  for its type, SHA1 for SignatureVersion 1 and SHA256 for 2;
- its `Timestamp` is recent (MAX_AGE), so an old message cannot be replayed.
There is no switch that turns any of this off. Tests give the fetcher a CA of their own and
an address to reach instead of AWS (HTTPSFetcher's arguments): the checks stay the same.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # cryptography (about 8 MB a process) is loaded by the first message
    from cryptography import x509

MESSAGE_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
# The keys signed, in this order, per message type (AWS: "Verifying the signatures of
# Amazon SNS messages"); Subject only when the message has one.
SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_KEYS["UnsubscribeConfirmation"] = SIGNED_KEYS["SubscriptionConfirmation"]
# SignatureVersion: the hash it signs with (cryptography.hazmat.primitives.hashes).
HASHES = {"1": "SHA1", "2": "SHA256"}
AWS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
# SNS retries a delivery for up to an hour with its default policies; older is a replay.
MAX_AGE = timedelta(hours=1)
MAX_SKEW = timedelta(minutes=5)
FETCH_TIMEOUT_SECONDS = 5.0  # two fetches at most still answer within SNS's 15 s
MAX_FETCH_BYTES = 64 * 1024


class SNSRejected(Exception):
    """The message is not a genuine, current SNS message for an allowed topic."""


@dataclass(frozen=True)
class SNSMessage:
    """A verified SNS message."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime
    subscribe_url: str | None


def check_aws_url(url: str, what: str) -> None:
    """Raise SNSRejected unless `url` is https on an SNS host of AWS's own."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SNSRejected(f"{what} is not a URL") from None
    if parts.scheme != "https":
        raise SNSRejected(f"{what} is not https: {url!r}")
    if parts.username or parts.password or port not in (None, 443):
        raise SNSRejected(f"{what} names a user or a port: {url!r}")
    if not AWS_HOST.fullmatch(parts.hostname or ""):
        raise SNSRejected(f"{what} is not on an SNS host (sns.<region>.amazonaws.com): {url!r}")


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """What SNS signed for `message`: "key\\nvalue\\n" for each signed key it has."""
    keys = SIGNED_KEYS.get(str(message.get("Type")))
    if keys is None:
        raise SNSRejected(f"unknown message type {message.get('Type')!r}")
    parts = []
    for key in keys:
        if key == "Subject" and message.get(key) is None:
            continue
        value = message.get(key)
        if not isinstance(value, str):
            raise SNSRejected(f"the message has no {key}")
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode("utf-8")


Fetch = Callable[[str], bytes]


class HTTPSFetcher:
    """GET over https with the certificate and host name verified (the system's CAs unless
    `ssl_context` says otherwise), no redirects, a short timeout, a bounded body.

    `connect_to(host, port)` gives the address to connect to instead of the host's own
    (tests reach a local server that presents a certificate for the AWS name; the name is
    still verified against it).
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        connect_to: Callable[[str, int], tuple[str, int]] | None = None,
        timeout: float = FETCH_TIMEOUT_SECONDS,
    ) -> None:
        self._ssl_context = ssl_context
        self.connect_to = connect_to
        self.timeout = timeout

    @property
    def ssl_context(self) -> ssl.SSLContext:
        # Made at the first fetch: loading the system's CAs takes 20 ms, which every app
        # (each web and worker process, each CLI command) would pay at start for nothing.
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def __call__(self, url: str) -> bytes:
        parts = urlsplit(url)
        host = parts.hostname or ""
        conn = http.client.HTTPSConnection(
            host, parts.port or 443, timeout=self.timeout, context=self.ssl_context
        )
        if self.connect_to is not None:
            target = self.connect_to(host, parts.port or 443)

            def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
                return socket.create_connection(target, *args, **kwargs)

            conn._create_connection = create_connection  # type: ignore[attr-defined]
        try:
            path = parts.path or "/"
            conn.request("GET", f"{path}?{parts.query}" if parts.query else path)
            response = conn.getresponse()
            body = response.read(MAX_FETCH_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise SNSRejected(f"fetching {url} failed: {exc}") from exc
        finally:
            conn.close()
        if response.status != 200:
            raise SNSRejected(f"fetching {url} answered {response.status}")
        if len(body) > MAX_FETCH_BYTES:
            raise SNSRejected(f"{url} answered more than {MAX_FETCH_BYTES} bytes")
        return body


class CertificateCache:
    """SNS signing certificates by URL, fetched once (only from AWS's SNS hosts)."""

    def __init__(self, fetch: Fetch, max_entries: int = 32) -> None:
        self.fetch = fetch
        self.max_entries = max_entries
        self._certificates: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> x509.Certificate:
        """The certificate at `url`. Raises SNSRejected."""
        check_aws_url(url, "SigningCertURL")
        with self._lock:
            found = self._certificates.get(url)
        if found is not None:
            return found
        try:
            from cryptography import x509

            certificate = x509.load_pem_x509_certificate(self.fetch(url))
        except ValueError as exc:
            raise SNSRejected(f"SigningCertURL does not hold a PEM certificate: {exc}") from None
        with self._lock:
            if len(self._certificates) >= self.max_entries:  # AWS rotates them rarely
                self._certificates.clear()
            self._certificates[url] = certificate
        return certificate


class SNSVerifier:
    """Checks SNS messages (see the module's docstring) and confirms subscriptions."""

    def __init__(self, fetch: Fetch | None = None) -> None:
        self.fetch: Fetch = fetch or HTTPSFetcher()
        self.certificates = CertificateCache(self.fetch)

    def verify(self, body: bytes, *, allowed_topics: frozenset[str], now: datetime) -> SNSMessage:
        """The message in `body`, verified. Raises SNSRejected saying why not."""
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SNSRejected("the body is not JSON") from None
        except RecursionError:  # nested deeper than Python's stack: no SNS message is
            raise SNSRejected("the body is nested too deeply for an SNS message") from None
        if not isinstance(message, dict):
            raise SNSRejected("the body is not a JSON object")
        # Every field is read as a string or refused: a number, list or object in any of
        # them is not an SNS message (and a list as TopicArn cannot even be looked up).
        kind = _string(message, "Type")
        if kind not in MESSAGE_TYPES:
            raise SNSRejected(f"unknown message type {kind!r}")
        topic = _string(message, "TopicArn")
        if topic not in allowed_topics:  # before any fetch: a stranger costs us nothing
            raise SNSRejected(f"topic {topic!r} is not in FORMRELAY_SNS_TOPIC_ARNS")
        timestamp = _timestamp(message.get("Timestamp"))
        if not now - MAX_AGE <= timestamp <= now + MAX_SKEW:
            raise SNSRejected(f"the message's Timestamp {message['Timestamp']} is not current")
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        hash_name = HASHES.get(_string(message, "SignatureVersion"))
        if hash_name is None:
            raise SNSRejected(f"unknown SignatureVersion {message.get('SignatureVersion')!r}")
        data = string_to_sign(message)
        try:
            signature = base64.b64decode(_string(message, "Signature"), validate=True)
        except (binascii.Error, ValueError):  # ValueError: not ASCII
            raise SNSRejected("the Signature is not base64") from None
        certificate = self.certificates.get(_string(message, "SigningCertURL"))
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SNSRejected("the signing certificate has expired or is not valid yet")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SNSRejected("the signing certificate's key is not RSA")
        try:
            key.verify(signature, data, padding.PKCS1v15(), getattr(hashes, hash_name)())
        except InvalidSignature:
            raise SNSRejected("the signature does not match the message") from None
        subscribe_url = message.get("SubscribeURL")
        return SNSMessage(
            type=kind,
            message_id=_string(message, "MessageId"),
            topic_arn=topic,
            message=_string(message, "Message"),
            timestamp=timestamp,
            subscribe_url=_string(message, "SubscribeURL") if subscribe_url is not None else None,
        )

    def confirm(self, message: SNSMessage) -> None:
        """Confirm a subscription by visiting its SubscribeURL (an AWS SNS host only).
        Raises SNSRejected."""
        if message.type != "SubscriptionConfirmation" or not message.subscribe_url:
            raise SNSRejected("not a subscription confirmation")
        check_aws_url(message.subscribe_url, "SubscribeURL")
        self.fetch(message.subscribe_url)


def _string(message: Mapping[str, Any], key: str) -> str:
    """The message's `key`, a string. Raises SNSRejected if it is missing or anything else."""
    value = message.get(key)
    if not isinstance(value, str):
        raise SNSRejected(f"the message's {key} is not a string")
    return value


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise SNSRejected("the message has no Timestamp")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SNSRejected(f"the Timestamp {value!r} is not a time") from None
    if moment.tzinfo is None:
        raise SNSRejected(f"the Timestamp {value!r} has no time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00: before year 1 in UTC
        raise SNSRejected(f"the Timestamp {value!r} is not a time") from None
