"""Fakes for tests: stand-ins that behave like the real parts, observable from outside."""

from __future__ import annotations

from email.message import Message

from formrelay.delivery import DeliveryFailed, SendResult


class RecordingBackend:
    """A mail backend that keeps every message; `fail_with` makes the next sends fail."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.failures: list[DeliveryFailed] = []
        self.closed = 0

    def fail_with(self, *errors: DeliveryFailed) -> None:
        self.failures.extend(errors)

    def send(self, message: Message) -> SendResult:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return SendResult(f"fake-{len(self.sent)}")

    def close(self) -> None:
        self.closed += 1
