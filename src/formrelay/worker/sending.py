"""Sending one delivery through its channel's backend; one backend per channel, kept open."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from email.message import Message
from email.utils import formataddr, getaddresses

from ..delivery import Backend, DeliveryFailed, TaggingBackend, create_backend, get_channel
from ..models import Delivery
from ..services.suppressions import canonical
from ..settings import Settings

log = logging.getLogger("formrelay.worker")

BackendFactory = Callable[[str, Settings], Backend]


class Sender:
    """Builds each delivery's message with its channel and hands it to the channel's backend.

    A backend is made on first use and kept (an SMTP connection serves a whole batch) until
    close(). Every failure comes back as a DeliveryFailed, never as another exception.
    """

    def __init__(self, settings: Settings, backend_factory: BackendFactory = create_backend):
        self.settings = settings
        self.backend_factory = backend_factory
        self._backends: dict[str, Backend] = {}

    def send(self, delivery: Delivery, skip: frozenset[str] = frozenset()) -> str | None:
        """Send one delivery, leaving out the Cc addresses in `skip` (suppressed, in
        canonical form); returns the provider's message id. Raises DeliveryFailed."""
        try:
            channel = get_channel(delivery.channel)  # UnknownChannel: dead, and says why
            message = channel.compose(delivery, self.settings)
            if skip and isinstance(message, Message):
                _drop_cc(message, skip)
            backend = self._backend(channel.name)
            if isinstance(backend, TaggingBackend):
                return backend.send_tagged(message, delivery_tags(delivery)).provider_message_id
            return backend.send(message).provider_message_id
        except DeliveryFailed:
            raise
        except Exception as exc:  # a bug of ours: keep the row, say what happened, retry later
            log.exception("delivery %s: unexpected error", delivery.id)
            raise DeliveryFailed(f"internal error: {exc!r}", retryable=True) from exc

    def prepare(self, deliveries: Iterable[Delivery]) -> None:
        """Make the backends these deliveries need now, so that making one (an SES client
        takes a good part of a second) does not delay a send past its paced slot. A
        channel that cannot be made is left for send() to report."""
        for name in {d.channel for d in deliveries}:
            # UnknownChannel, or the backend's own error: send() reports it for the row.
            with contextlib.suppress(Exception):
                self._backend(get_channel(name).name)

    def _backend(self, channel: str) -> Backend:
        if channel not in self._backends:
            self._backends[channel] = self.backend_factory(channel, self.settings)
        return self._backends[channel]

    def close(self) -> None:
        """Release every backend's connection (an idle worker holds none)."""
        backends, self._backends = self._backends, {}
        for channel, backend in backends.items():
            try:
                backend.close()
            except Exception:
                log.exception("closing the %s backend failed", channel)


def delivery_tags(delivery: Delivery) -> dict[str, str]:
    """The tags a provider reports back with its events: which delivery, which form."""
    tags = {"formrelay-delivery": str(delivery.id)}
    if delivery.submission is not None:
        tags["formrelay-form"] = str(delivery.submission.form_id)
    return tags


def _drop_cc(message: Message, skip: frozenset[str]) -> None:
    if message["Cc"] is None:
        return
    kept = [(n, a) for n, a in getaddresses([str(message["Cc"])]) if canonical(a) not in skip]
    del message["Cc"]
    if kept:
        message["Cc"] = ", ".join(formataddr(pair) for pair in kept)
