"""Development backend: print each message to standard output, as a person reads it."""

from __future__ import annotations

import sys
import threading
from email.header import decode_header, make_header
from email.message import Message
from typing import TextIO

from . import SendResult
from .message import escape_controls

_lock = threading.Lock()


class ConsoleBackend:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send(self, message: Message) -> SendResult:
        stream = self.stream or sys.stdout
        text = readable(message)
        with _lock:  # keep concurrent messages from interleaving
            stream.write(f"{'-' * 30} formrelay: message {'-' * 30}\n{text}\n{'-' * 79}\n")
            stream.flush()
        return SendResult(message["Message-ID"])

    def check(self) -> str:
        """Always fine: there is nothing to connect to."""
        return "Messages are printed to the standard output of the worker; nothing is sent."

    def close(self) -> None:
        pass


def _decoded(value: str) -> str:
    """A header value with its encoded words decoded; as it is when they do not decode."""
    try:
        return str(make_header(decode_header(value)))
    except (UnicodeError, LookupError, ValueError):
        return value


def readable(message: Message) -> str:
    """The headers, then the plain-text part decoded; other parts are named, not shown.

    On the wire the text is quoted-printable ("Zo=C3=AB"); a developer wants to read it.
    Control characters are shown escaped (`\\x1b`): a submission must not steer the
    terminal it is printed on.
    """
    lines = [
        f"{name}: {escape_controls(_decoded(str(value)))}"
        for name, value in message.items()
        if name not in ("Content-Type", "Content-Transfer-Encoding")
    ]
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        content_type = part.get_content_type()
        if content_type == "text/plain":
            charset = part.get_content_charset() or "utf-8"
            body = payload.decode(charset, "replace").replace("\r\n", "\n").rstrip("\n")
            lines += ["", escape_controls(body, keep="\t\n")]
        else:
            lines += ["", f"[{content_type} alternative, {len(payload)} bytes]"]
    return "\n".join(lines)
