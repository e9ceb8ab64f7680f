"""A stand-in for AWS SNS's HTTPS side, with a CA of the test's own.

`FakeSNSHost` serves the signing certificate and answers SubscribeURL visits over https,
presenting a certificate for the SNS host names that the test CA signed. `SNSSigner`
signs messages as SNS does (SignatureVersion 1: SHA1, 2: SHA256). The verifier under test
gets an HTTPSFetcher that trusts only the test CA and connects to this server: every
check (scheme, host name pattern, certificate, host name) still runs.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from formrelay.services.sns import HTTPSFetcher, string_to_sign

REGION = "us-east-1"
HOST = f"sns.{REGION}.amazonaws.com"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:formrelay-ses-events"
CERT_PATH = "/SimpleNotificationService-0000000000000000000000.pem"
CERT_URL = f"https://{HOST}{CERT_PATH}"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    dns: list[str] | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class LocalCA:
    """A CA, a TLS certificate it signed for the SNS host names, and a signing key."""

    def __init__(self, folder: Path) -> None:
        ca_key = _key()
        self.ca = _certificate("formrelay test CA", ca_key, "formrelay test CA", ca_key, ca=True)
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(_pem(self.ca))
        tls_key = _key()
        tls = _certificate(
            HOST, tls_key, "formrelay test CA", ca_key, dns=[HOST, "sns.eu-west-1.amazonaws.com"]
        )
        self.tls_cert_file = folder / "tls.pem"
        self.tls_key_file = folder / "tls-key.pem"
        self.tls_cert_file.write_bytes(_pem(tls))
        self.tls_key_file.write_bytes(
            tls_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.signing_key = _key()
        self.signing_cert = _certificate(
            "sns.amazonaws.com", self.signing_key, "formrelay test CA", ca_key
        )

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


class _Handler(BaseHTTPRequestHandler):
    server: FakeSNSHost

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path == CERT_PATH:
            body, status = _pem(self.server.ca.signing_cert), 200
        elif self.path.startswith("/?Action=ConfirmSubscription"):
            body, status = b"<ConfirmSubscriptionResponse/>", 200
        else:
            body, status = b"not found", 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeSNSHost(ThreadingHTTPServer):
    """https://sns.<region>.amazonaws.com as far as formrelay visits it (on 127.0.0.1)."""

    def __init__(self, ca: LocalCA) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ca = ca
        self.requests: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(ca.tls_cert_file, ca.tls_key_file)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.port = int(self.server_address[1])

    def fetcher(self) -> HTTPSFetcher:
        return HTTPSFetcher(
            ssl_context=self.ca.client_context(),
            connect_to=lambda host, port: ("127.0.0.1", self.port),
        )

    def run(self) -> Iterator[FakeSNSHost]:
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.shutdown()
            self.server_close()
            thread.join()


class SNSSigner:
    """Builds SNS messages as SNS sends them, signed with the test's signing key."""

    def __init__(self, ca: LocalCA) -> None:
        self.ca = ca
        self.count = 0

    def _sign(self, message: dict[str, Any], version: str) -> dict[str, Any]:
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.ca.signing_key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": message.get("SigningCertURL", CERT_URL),
        }

    def _base(self, kind: str, when: datetime | None) -> dict[str, Any]:
        self.count += 1
        moment = when or datetime.now(UTC)
        return {
            "Type": kind,
            "MessageId": f"00000000-0000-0000-0000-{self.count:012d}",
            "TopicArn": TOPIC,
            "Timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    def notification(
        self,
        event: dict[str, Any],
        *,
        version: str = "2",
        subject: str | None = "Amazon SES Email Event Notification",
        when: datetime | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        message = {**self._base("Notification", when), "Message": json.dumps(event)}
        if subject is not None:
            message["Subject"] = subject
        message.update(overrides)
        message["UnsubscribeURL"] = f"https://{HOST}/?Action=Unsubscribe&SubscriptionArn=x"
        return self._sign(message, version)

    def subscription(
        self, kind: str = "SubscriptionConfirmation", *, version: str = "2", **overrides: Any
    ) -> dict[str, Any]:
        token = "2336412f37fb687f5d51e6e2425c464de12884c2b8d4f4ad"
        message = {
            **self._base(kind, None),
            "Token": token,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
            "SubscribeURL": (
                f"https://{HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"
            ),
        }
        message.update(overrides)
        return self._sign(message, version)
