"""Backend checks: each mail backend connects (and logs in) as a send would, sending nothing.

SMTP against a real aiosmtpd server; SES over real HTTP against a small fake of sesv2's
GetAccount, which moto 5.2 does not implement (its server answers 404 for it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from formrelay.delivery import CheckResult, check_backend
from formrelay.settings import Settings, load_settings

from ..mailserver import SENDER, MailServer, RecordingHandler
from ..servers import free_port, without_settings

LOGIN, PASSWORD = "relay", "s3cret-pass"


def settings(**overrides: object) -> Settings:
    return load_settings({}, {"mail_default_sender": SENDER, "mail_timeout": 5.0, **overrides})


def smtp_settings(port: int, **overrides: object) -> Settings:
    return settings(mail_backend="smtp", mail_server="127.0.0.1", mail_port=port, **overrides)


# -- console ----------------------------------------------------------------------------------
def test_the_console_backend_is_always_fine() -> None:
    assert check_backend("email", settings()) == CheckResult(
        "email",
        "console",
        True,
        "Messages are printed to the standard output of the worker; nothing is sent.",
    )


# -- SMTP -------------------------------------------------------------------------------------
class CommandsHandler(RecordingHandler):
    """Records the commands a client gave (NOOP, QUIT) besides the messages it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[str] = []
        self.logins: list[str] = []

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        self.commands.append("NOOP")
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.commands.append("QUIT")
        return "221 Bye"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        valid = auth_data == LoginPassword(LOGIN.encode(), PASSWORD.encode())
        if valid:
            self.logins.append(LOGIN)
        return AuthResult(success=valid, handled=False)  # unhandled: aiosmtpd answers 535


@pytest.fixture
def plain_server() -> Iterator[MailServer]:
    with MailServer(CommandsHandler()) as server:
        yield server


@pytest.fixture
def login_server() -> Iterator[MailServer]:
    """A server that asks for a login (over plain text, to keep TLS out of this test)."""
    handler = CommandsHandler()
    with MailServer(handler, authenticator=handler.authenticate, auth_require_tls=False) as server:
        yield server


def test_smtp_check_says_ehlo_and_noop_and_sends_nothing(plain_server: MailServer) -> None:
    result = check_backend("email", smtp_settings(plain_server.port))

    assert result == CheckResult(
        "email",
        "smtp",
        True,
        f"SMTP 127.0.0.1:{plain_server.port} answered EHLO and NOOP (no TLS, no login configured).",
    )
    assert plain_server.received == []
    assert isinstance(plain_server.handler, CommandsHandler)
    assert plain_server.handler.commands == ["NOOP", "QUIT"]


def test_smtp_check_logs_in_with_the_configured_account(login_server: MailServer) -> None:
    result = check_backend(
        "email",
        smtp_settings(login_server.port, mail_username=LOGIN, mail_password=PASSWORD),
    )

    assert result.ok, result.message
    assert result.message == (
        f"SMTP 127.0.0.1:{login_server.port} answered EHLO and NOOP (no TLS, logged in as relay)."
    )
    assert isinstance(login_server.handler, CommandsHandler)
    assert login_server.handler.logins == [LOGIN]
    assert login_server.received == []


def test_smtp_check_reports_a_refused_login(login_server: MailServer) -> None:
    result = check_backend(
        "email",
        smtp_settings(login_server.port, mail_username=LOGIN, mail_password="wrong-password"),
    )

    assert result == CheckResult(
        "email",
        "smtp",
        False,
        f"SMTP 127.0.0.1:{login_server.port} refused the session: 535 5.7.8 "
        "Authentication credentials invalid",
    )


def test_smtp_check_reports_a_login_the_server_does_not_offer(plain_server: MailServer) -> None:
    result = check_backend(
        "email", smtp_settings(plain_server.port, mail_username=LOGIN, mail_password=PASSWORD)
    )

    assert not result.ok
    assert result.message == (
        f"cannot connect to SMTP 127.0.0.1:{plain_server.port}: "
        "SMTP AUTH extension not supported by server."
    )


def test_smtp_check_reports_a_refused_connection() -> None:
    port = free_port()  # nothing listens there

    result = check_backend("email", smtp_settings(port))

    assert result == CheckResult(
        "email",
        "smtp",
        False,
        f"cannot connect to SMTP 127.0.0.1:{port}: [Errno 111] Connection refused",
    )


# -- SES: sesv2 GetAccount over real HTTP -----------------------------------------------------
ACCOUNT = {
    "SendingEnabled": True,
    "ProductionAccessEnabled": False,
    "EnforcementStatus": "HEALTHY",
    "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 3.0},
}


class GetAccountHandler(BaseHTTPRequestHandler):
    """sesv2's GetAccount as AWS answers it: the account for the key `testing`, SES's own
    error for any other key, 404 for every other operation."""

    server: FakeSES

    def do_GET(self) -> None:
        self.server.requests.append(f"GET {self.path}")
        if self.path != "/v2/email/account":
            self._answer(404, {"message": "not faked"}, "NotFoundException")
        elif "Credential=testing/" not in self.headers.get("Authorization", ""):
            message = "The security token included in the request is invalid."
            self._answer(403, {"message": message}, "UnrecognizedClientException")
        else:
            self._answer(200, self.server.account)

    def do_POST(self) -> None:
        self.server.requests.append(f"POST {self.path}")
        self._answer(404, {"message": "not faked"}, "NotFoundException")

    def _answer(self, status: int, body: dict[str, Any], error: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeSES(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), GetAccountHandler)
        self.requests: list[str] = []
        self.account: dict[str, Any] = dict(ACCOUNT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def aws_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep a developer's ~/.aws and the instance metadata service out of the tests."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def fake_ses(aws_isolated: None) -> Iterator[FakeSES]:
    server = FakeSES()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def ses_settings(endpoint: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "mail_backend": "ses",
        "aws_region": "us-east-1",
        "aws_endpoint_url": endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return settings(**(values | overrides))


def test_ses_check_asks_for_the_account_and_sends_nothing(fake_ses: FakeSES) -> None:
    result = check_backend("email", ses_settings(fake_ses.url))

    assert result == CheckResult(
        "email",
        "ses",
        True,
        "SES answered: sending enabled, in the sandbox: only verified addresses receive mail; "
        "sent 3 of 200 in the last 24 hours, at most 1 a second.",
    )
    assert fake_ses.requests == ["GET /v2/email/account"]


def test_ses_check_says_when_the_account_has_production_access(fake_ses: FakeSES) -> None:
    fake_ses.account["ProductionAccessEnabled"] = True

    result = check_backend("email", ses_settings(fake_ses.url))

    assert result.ok
    assert result.message.startswith("SES answered: sending enabled, production access;")


def test_ses_check_fails_when_sending_is_paused(fake_ses: FakeSES) -> None:
    fake_ses.account |= {"SendingEnabled": False, "EnforcementStatus": "SHUTDOWN"}

    result = check_backend("email", ses_settings(fake_ses.url))

    assert result == CheckResult(
        "email",
        "ses",
        False,
        "SES answered, but sending is paused for this account (enforcement status: SHUTDOWN).",
    )


def test_ses_check_reports_credentials_aws_does_not_know(fake_ses: FakeSES) -> None:
    result = check_backend("email", ses_settings(fake_ses.url, aws_access_key_id="AKIAWRONG"))

    assert result == CheckResult(
        "email",
        "ses",
        False,
        "SES UnrecognizedClientException: The security token included in the request is invalid.",
    )


def test_ses_check_reports_an_endpoint_where_nothing_listens(aws_isolated: None) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"

    result = check_backend("email", ses_settings(endpoint))

    assert result == CheckResult(
        "email",
        "ses",
        False,
        f'SES unreachable: Could not connect to the endpoint URL: "{endpoint}/v2/email/account"',
    )


# -- the same check from the command line ------------------------------------------------------
FORMRELAY = str(Path(sys.executable).parent / "formrelay")


def config_check_mail(tmp_path: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {
        **without_settings(os.environ),
        "FORMRELAY_INSTANCE_PATH": str(tmp_path / "instance"),
        "MAIL_DEFAULT_SENDER": SENDER,
        "FORMRELAY_MAIL_TIMEOUT": "5",
        **environ,
    }
    return subprocess.run(
        [FORMRELAY, "config", "check", "--mail"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_check_mail_connects_and_says_what_answered(
    tmp_path: Path, plain_server: MailServer
) -> None:
    port = plain_server.port
    result = config_check_mail(
        tmp_path, MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=str(port)
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-2:] == [
        "configuration OK",
        f"mail OK (smtp): SMTP 127.0.0.1:{port} answered EHLO and NOOP "
        "(no TLS, no login configured).",
    ]
    assert plain_server.received == []


def test_config_check_mail_fails_with_status_1_saying_why(tmp_path: Path) -> None:
    port = free_port()
    result = config_check_mail(
        tmp_path, MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=str(port)
    )

    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "configuration OK"
    assert result.stderr == (
        f"Error: mail check failed (smtp): cannot connect to SMTP 127.0.0.1:{port}: "
        "[Errno 111] Connection refused\n"
    )
