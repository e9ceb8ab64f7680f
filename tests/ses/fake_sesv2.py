"""A small SES (sesv2) over HTTP for what moto lacks: DKIM tokens, GetAccount, limits.

It speaks sesv2's real wire format (REST + JSON, errors named by `x-amzn-ErrorType`), so
boto3 talks to it as to AWS; it also answers STS GetCallerIdentity (query protocol, XML)
for the account id `ses setup` puts in its policy. State is plain attributes a test sets
and reads: `production`, `quota`, `refuse_sends` (errors SendEmail answers next),
`identities`, `configuration_sets`, `sent` (each SendEmail with the time it arrived).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

ACCOUNT_ID = "123456789012"


class _Handler(BaseHTTPRequestHandler):
    server: FakeSESv2
    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _answer(self, status: int, payload: Any, error: str | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._answer(status, {"message": message}, error=code)

    def do_GET(self) -> None:
        self._body()
        with self.server.lock:
            self.server.calls.append(("GET", self.path))
            self._route("GET", self.path, {})

    def do_POST(self) -> None:
        raw = self._body()
        with self.server.lock:
            self.server.calls.append(("POST", self.path))
            if self.path == "/" and b"Action=GetCallerIdentity" in raw:
                return self._sts()
            self._route("POST", self.path, json.loads(raw or b"{}"))

    def do_PUT(self) -> None:
        raw = self._body()
        with self.server.lock:
            self.server.calls.append(("PUT", self.path))
            self._route("PUT", self.path, json.loads(raw or b"{}"))

    def _sts(self) -> None:
        body = (
            '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<GetCallerIdentityResult>"
            f"<Arn>arn:aws:iam::{ACCOUNT_ID}:user/admin</Arn>"
            "<UserId>AIDAEXAMPLE</UserId>"
            f"<Account>{ACCOUNT_ID}</Account>"
            "</GetCallerIdentityResult>"
            "<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>"
            "</GetCallerIdentityResponse>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str, path: str, body: dict[str, Any]) -> None:
        s = self.server
        parts = [unquote(p) for p in path.split("?")[0].strip("/").split("/")]
        if parts[:2] != ["v2", "email"]:
            return self._error(404, "NotFoundException", f"no route {path}")
        rest = parts[2:]
        if rest == ["account"] and method == "GET":
            return self._answer(200, s.account())
        if rest == ["outbound-emails"] and method == "POST":
            if s.refuse_sends:
                code, message = s.refuse_sends.pop(0)
                status = 429 if code == "TooManyRequestsException" else 400
                return self._error(status, code, message)
            s.sent.append((time.time(), body))
            return self._answer(200, {"MessageId": f"fake-{len(s.sent)}-{secrets.token_hex(4)}"})
        if rest == ["identities"] and method == "POST":
            name = body["EmailIdentity"]
            if name in s.identities:
                return self._error(400, "AlreadyExistsException", f"{name} already exists")
            s.identities[name] = s.new_identity(name)
            identity = s.identities[name]
            return self._answer(
                200,
                {
                    "IdentityType": identity["IdentityType"],
                    "VerifiedForSendingStatus": identity["VerifiedForSendingStatus"],
                    "DkimAttributes": identity["DkimAttributes"],
                },
            )
        if len(rest) >= 2 and rest[0] == "identities":
            identity = s.identities.get(rest[1])
            if identity is None:
                return self._error(
                    404, "NotFoundException", f"Email identity {rest[1]} does not exist."
                )
            if len(rest) == 2 and method == "GET":
                return self._answer(200, identity)
            if rest[2:] == ["mail-from"] and method == "PUT":
                identity["MailFromAttributes"] = {
                    "MailFromDomain": body["MailFromDomain"],
                    "MailFromDomainStatus": "PENDING",
                    "BehaviorOnMxFailure": body.get("BehaviorOnMxFailure", "USE_DEFAULT_VALUE"),
                }
                return self._answer(200, {})
        if rest == ["configuration-sets"] and method == "POST":
            name = body["ConfigurationSetName"]
            if name in s.configuration_sets:
                return self._error(400, "AlreadyExistsException", f"{name} already exists")
            s.configuration_sets[name] = {}
            return self._answer(200, {})
        if len(rest) >= 3 and rest[0] == "configuration-sets" and rest[2] == "event-destinations":
            destinations = s.configuration_sets.get(rest[1])
            if destinations is None:
                return self._error(404, "NotFoundException", f"{rest[1]} does not exist")
            if len(rest) == 3 and method == "GET":
                listed = [{"Name": n, **d} for n, d in destinations.items()]
                return self._answer(200, {"EventDestinations": listed})
            if len(rest) == 3 and method == "POST":
                name = body["EventDestinationName"]
                if name in destinations:
                    return self._error(400, "AlreadyExistsException", f"{name} already exists")
                destinations[name] = body["EventDestination"]
                return self._answer(200, {})
            if len(rest) == 4 and method == "PUT":
                destinations[rest[3]] = body["EventDestination"]
                return self._answer(200, {})
        return self._error(404, "NotFoundException", f"{method} {path} is not faked")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeSESv2(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()
        self.production = False
        self.sending_enabled = True
        self.enforcement = "HEALTHY"
        self.quota = {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 0.0}
        self.refuse_sends: list[tuple[str, str]] = []
        self.identities: dict[str, dict[str, Any]] = {}
        self.configuration_sets: dict[str, dict[str, Any]] = {}
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.calls: list[tuple[str, str]] = []

    def account(self) -> dict[str, Any]:
        return {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": self.enforcement,
            "ProductionAccessEnabled": self.production,
            "SendQuota": dict(self.quota),
            "SendingEnabled": self.sending_enabled,
            "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
            "Details": {"MailType": "TRANSACTIONAL", "WebsiteURL": "https://example.com"},
        }

    @staticmethod
    def new_identity(name: str) -> dict[str, Any]:
        domain = "@" not in name
        return {
            "IdentityType": "DOMAIN" if domain else "EMAIL_ADDRESS",
            "FeedbackForwardingStatus": True,
            "VerifiedForSendingStatus": False,
            "VerificationStatus": "PENDING",
            "DkimAttributes": {
                "SigningEnabled": domain,
                "Status": "PENDING" if domain else "NOT_STARTED",
                "Tokens": [secrets.token_hex(16) for _ in range(3)] if domain else [],
                "SigningAttributesOrigin": "AWS_SES",
            },
            "MailFromAttributes": {
                "MailFromDomain": "",
                "MailFromDomainStatus": "",
                "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
            },
            "Policies": {},
            "Tags": [],
        }

    def verify(self, name: str) -> None:
        """As SES does once it has seen the DKIM records (or the address's owner clicked)."""
        with self.lock:
            identity = self.identities.setdefault(name, self.new_identity(name))
            identity["VerifiedForSendingStatus"] = True
            identity["VerificationStatus"] = "SUCCESS"
            if identity["IdentityType"] == "DOMAIN":
                identity["DkimAttributes"]["Status"] = "SUCCESS"

    def run(self) -> Iterator[FakeSESv2]:
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.shutdown()
            self.server_close()
            thread.join()
