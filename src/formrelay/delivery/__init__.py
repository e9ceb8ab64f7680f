"""Delivery channels and their backends, behind one registry keyed by channel.

A channel ("email"; later "webhook") says how a Delivery row becomes something to send and
which of its registered backends the settings choose. A backend is built from Settings,
sends one message per `send` call and reports failure by raising DeliveryFailed, which says
whether another attempt could succeed; it may hold a connection open between sends, which
`close` releases. A backend may also have `check() -> str`: connect and log in as a send
would, send nothing, and say what answered (or raise DeliveryFailed); `check_backend` runs
it for the admin's status page and `formrelay config check --mail`. It is a separate,
optional method (CheckableBackend) so that an extension's backend without one still
registers; such a backend is reported as one that cannot be checked. formrelay's own
channel and backends register in delivery/builtin.py through the same calls an extension
would use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..models import Delivery
    from ..settings import Settings

# What a channel's backends send: an email.message.Message for "email".
Outgoing = Any


class DeliveryFailed(Exception):
    """A send did not succeed; `retryable` says whether the outbox should try again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class DeliveryDeferred(DeliveryFailed):
    """The provider refused for now (a send-rate or daily-quota limit), not the message.

    Not counted as an attempt, so never the reason a delivery ends dead: it is due again
    after `retry_after` seconds. `pause_all` asks every worker to hold its sends for that
    many seconds (the account's rate was exceeded, not this message's).
    """

    def __init__(self, message: str, *, retry_after: float, pause_all: float = 0.0) -> None:
        super().__init__(message, retryable=True)
        self.retry_after = retry_after
        self.pause_all = pause_all


class UnknownChannel(DeliveryFailed):
    """No channel (or no backend of it) is registered under the name a row or setting gives."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None = None


class Backend(Protocol):
    def send(self, message: Outgoing) -> SendResult: ...

    def close(self) -> None: ...


@runtime_checkable
class CheckableBackend(Backend, Protocol):
    def check(self) -> str:
        """Connect (and log in) without sending; say what answered. Raises DeliveryFailed."""
        ...


@dataclass(frozen=True)
class CheckResult:
    """What a backend check found: `ok`, and what answered or what went wrong."""

    channel: str
    backend: str
    ok: bool
    message: str


@runtime_checkable
class TaggingBackend(Backend, Protocol):
    def send_tagged(self, message: Outgoing, tags: dict[str, str]) -> SendResult:
        """Send with tags the provider reports back with its events (SES message tags)."""
        ...


BackendFactory = Callable[["Settings"], Backend]


@dataclass(frozen=True)
class Channel:
    name: str
    # The message one delivery of this channel sends (built afresh for every attempt).
    compose: Callable[[Delivery, Settings], Outgoing]
    # The name of the backend the settings choose (MAIL_BACKEND for "email").
    chosen: Callable[[Settings], str]
    backends: dict[str, BackendFactory] = field(default_factory=dict)


_CHANNELS: dict[str, Channel] = {}


def register_channel(
    name: str,
    *,
    compose: Callable[[Delivery, Settings], Outgoing],
    chosen: Callable[[Settings], str],
) -> Channel:
    """Add a delivery channel (or replace one of the same name, keeping its backends)."""
    backends = _CHANNELS[name].backends if name in _CHANNELS else {}
    _CHANNELS[name] = Channel(name, compose, chosen, backends)
    return _CHANNELS[name]


def register_backend(channel: str, name: str, factory: BackendFactory) -> None:
    """Add a backend to a registered channel. Raises UnknownChannel for another channel."""
    get_channel(channel).backends[name] = factory


def get_channel(name: str) -> Channel:
    """The channel registered under `name`. Raises UnknownChannel."""
    try:
        return _CHANNELS[name]
    except KeyError:
        raise UnknownChannel(f"no delivery channel {name!r} is registered") from None


def backend_names(channel: str) -> tuple[str, ...]:
    """The backends registered for `channel`, in registration order."""
    return tuple(get_channel(channel).backends)


def create_backend(channel: str, settings: Settings) -> Backend:
    """The backend the settings choose for `channel`. Raises UnknownChannel."""
    found = get_channel(channel)
    name = found.chosen(settings)
    try:
        factory = found.backends[name]
    except KeyError:
        raise UnknownChannel(f"channel {channel!r} has no backend {name!r}") from None
    return factory(settings)


def check_backend(channel: str, settings: Settings) -> CheckResult:
    """Check the backend the settings choose for `channel`: connect, send nothing, close.

    A failure is the result (ok False, the error as the outbox would record it), not an
    exception. Raises UnknownChannel for a channel that is not registered.
    """
    name = get_channel(channel).chosen(settings)
    try:
        backend = create_backend(channel, settings)
    except DeliveryFailed as exc:
        return CheckResult(channel, name, False, str(exc))
    try:
        if not isinstance(backend, CheckableBackend):
            return CheckResult(
                channel, name, False, f"the {name} backend cannot be checked without sending"
            )
        return CheckResult(channel, name, True, backend.check())
    except DeliveryFailed as exc:
        return CheckResult(channel, name, False, str(exc))
    finally:
        backend.close()


from . import builtin  # noqa: E402, F401  (formrelay's own channel and backends register)
