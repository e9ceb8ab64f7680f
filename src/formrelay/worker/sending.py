"""Sending one delivery through its channel's backend; one backend per channel, kept open."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..delivery import Backend, DeliveryFailed, create_backend, get_channel
from ..models import Delivery
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

    def send(self, delivery: Delivery) -> str | None:
        """Send one delivery; returns the provider's message id. Raises DeliveryFailed."""
        try:
            channel = get_channel(delivery.channel)  # UnknownChannel: dead, and says why
            message = channel.compose(delivery, self.settings)
            return self._backend(channel.name).send(message).provider_message_id
        except DeliveryFailed:
            raise
        except Exception as exc:  # a bug of ours: keep the row, say what happened, retry later
            log.exception("delivery %s: unexpected error", delivery.id)
            raise DeliveryFailed(f"internal error: {exc!r}", retryable=True) from exc

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
