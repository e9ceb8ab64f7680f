"""Development backend: print the whole message to standard output."""

from __future__ import annotations

import sys
import threading
from email.message import Message
from typing import TextIO

from . import SendResult

_lock = threading.Lock()


class ConsoleBackend:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send(self, message: Message) -> SendResult:
        stream = self.stream or sys.stdout
        text = message.as_string(policy=message.policy.clone(linesep="\n"))
        with _lock:  # keep concurrent messages from interleaving
            stream.write(f"{'-' * 30} formrelay: message {'-' * 30}\n{text}\n{'-' * 79}\n")
            stream.flush()
        return SendResult(message["Message-ID"])

    def close(self) -> None:
        pass
