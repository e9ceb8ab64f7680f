"""SMTP through smtplib: verified TLS, timeouts, one connection reused across sends."""

from __future__ import annotations

import smtplib
import ssl
from email.message import Message

from ..settings import Settings
from . import DeliveryFailed, SendResult
from .message import deliverable_recipients, header_addresses, without_attachments


class SMTPBackend:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        use_tls: bool = False,
        use_ssl: bool = False,
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        ca_file: str = "",
    ) -> None:
        self.host, self.port = host, port
        self.use_tls, self.use_ssl = use_tls, use_ssl
        self.username, self.password = username, password
        self.timeout = timeout
        # Certificate and host name are checked (Flask-Mail and Flask-Mailman check neither).
        self.tls_context = ssl.create_default_context(cafile=ca_file or None)
        self._conn: smtplib.SMTP | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> SMTPBackend:
        return cls(
            s.mail_server,
            s.mail_port,
            use_tls=s.mail_use_tls,
            use_ssl=s.mail_use_ssl,
            username=s.mail_username,
            password=s.mail_password,
            timeout=s.mail_timeout,
            ca_file=s.mail_ca_file,
        )

    def send(self, message: Message) -> SendResult:
        sender = header_addresses(message, "From")[0]
        data = message.as_bytes()
        refused: dict[str, tuple[int, bytes]] = {}
        for _ in range(2):
            # A reused connection may have been closed by the server since (an idle timeout,
            # a cap on messages per connection): then one new connection gets the message.
            reused = self._conn is not None
            conn = self._connect()
            # sendmail, not send_message: send_message clones the message's policy with
            # utf8=True for a non-ASCII address, which compat32 does not take.
            offered = conn.has_extn("smtputf8")
            recipients = deliverable_recipients(
                message, smtputf8=offered, via=f"SMTP {self.host}:{self.port}"
            )
            international = not all(a.isascii() for a in [sender, *recipients])
            options = ["SMTPUTF8"] if international else []
            limit = _size_limit(conn)
            if limit and len(data) > limit:
                # The server would refuse it whole: the files stay linked, not attached.
                data = without_attachments(message, limit).as_bytes()
            try:
                refused = conn.sendmail(sender, recipients, data, mail_options=options)
                break
            except smtplib.SMTPServerDisconnected as exc:
                self.close()
                if not reused:
                    raise DeliveryFailed(
                        f"SMTP server disconnected: {exc}", retryable=True
                    ) from exc
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
                if reused and _server_closing(exc):
                    self.close()  # 421: the message was not taken; smtplib has hung up
                    continue
                self._reset()
                if isinstance(exc, smtplib.SMTPRecipientsRefused):
                    raise _recipients_failure(exc.recipients) from exc
                raise _response_failure(exc) from exc
            except (OSError, smtplib.SMTPException) as exc:
                self.close()
                raise DeliveryFailed(f"SMTP error: {exc}", retryable=True) from exc
        # smtplib raises only when every recipient is refused. A Cc refused while the form's
        # recipient got through counts as sent; the recipient refused does not, although a
        # retry then sends the Cc another copy.
        to = set(header_addresses(message, "To"))
        missed = {address: reply for address, reply in refused.items() if address in to}
        if missed:
            raise _recipients_failure(missed)
        return SendResult(message["Message-ID"])

    def check(self) -> str:
        """Connect, say EHLO, set up TLS and log in as a send does, then NOOP and QUIT.

        Raises DeliveryFailed with the same words a failed send records."""
        try:
            conn = self._connect()
            code, reply = conn.noop()
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"SMTP {self.host}:{self.port}: {exc}", retryable=True) from exc
        finally:
            self.close()
        if code != 250:
            raise DeliveryFailed(
                f"SMTP {self.host}:{self.port} answered NOOP with {code} {_text(reply)}",
                retryable=True,
            )
        security = "implicit TLS" if self.use_ssl else "STARTTLS" if self.use_tls else "no TLS"
        login = f"logged in as {self.username}" if self.username else "no login configured"
        return f"SMTP {self.host}:{self.port} answered EHLO and NOOP ({security}, {login})."

    def _connect(self) -> smtplib.SMTP:
        """The open connection, or a new one: connected, TLS set up, logged in."""
        if self._conn is not None:
            return self._conn
        conn: smtplib.SMTP | None = None
        try:
            if self.use_ssl:
                conn = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.tls_context
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            conn.ehlo()
            if self.use_tls:
                conn.starttls(context=self.tls_context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password)
        except smtplib.SMTPResponseException as exc:
            _hang_up(conn)
            # Connection and log-in refusals are the operator's to fix; the mail waits for it.
            raise DeliveryFailed(
                f"SMTP {self.host}:{self.port} refused the session: {exc.smtp_code} "
                f"{_text(exc.smtp_error)}",
                retryable=True,
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            _hang_up(conn)
            raise DeliveryFailed(
                f"cannot connect to SMTP {self.host}:{self.port}: {exc}", retryable=True
            ) from exc
        self._conn = conn
        return conn

    def _reset(self) -> None:
        """Abort the failed transaction so the connection serves the next message."""
        if self._conn is None:
            return
        try:
            self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        _hang_up(conn)


def _hang_up(conn: smtplib.SMTP | None) -> None:
    """QUIT politely if the server still listens; close the socket in any case."""
    if conn is None:
        return
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


def _server_closing(exc: smtplib.SMTPException) -> bool:
    """Whether the server answered 421: it is closing the connection, the message not taken."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(code == 421 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == 421


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _response_failure(exc: smtplib.SMTPResponseException) -> DeliveryFailed:
    permanent = 500 <= exc.smtp_code < 600
    return DeliveryFailed(f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}", retryable=not permanent)


def _recipients_failure(refused: dict[str, tuple[int, bytes]]) -> DeliveryFailed:
    permanent = all(500 <= code < 600 for code, _ in refused.values())
    detail = "; ".join(f"{addr}: {code} {_text(text)}" for addr, (code, text) in refused.items())
    return DeliveryFailed(f"SMTP refused recipients: {detail}", retryable=not permanent)


def _size_limit(conn: smtplib.SMTP) -> int:
    """The message size the server advertises in EHLO (RFC 1870 SIZE); 0 for none."""
    raw = conn.esmtp_features.get("size", "")
    return int(raw) if raw.strip().isdigit() else 0
