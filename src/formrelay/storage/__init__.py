"""Where uploaded files live: one small interface, backends in a registry.

A backend is made from the settings by its factory, registered by name through
`register_storage` (builtin.py registers local and s3 through the same call an extension
would use); FORMRELAY_STORAGE chooses one. Objects are named by random keys
(`new_key`), never by anything a client sent.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from flask import Flask

    from ..settings import Settings


class StorageError(Exception):
    """The storage could not write, read or delete an object."""


class Writer(Protocol):
    """An object being written, part by part; nothing is visible under its key until
    `close`, and `abort` leaves nothing behind."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class Served:
    """How a download is answered: a local file (`path`, relative to the storage's root
    as `relative`) or a redirect to a URL that serves it (`url`)."""

    path: Path | None = None
    relative: str | None = None
    url: str | None = None


class Storage(Protocol):
    name: str

    def writer(self, key: str) -> Writer: ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object. Raises StorageError when it is missing."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is no error."""
        ...

    def keys(self, older_than: datetime) -> Iterator[str]:
        """The keys of the objects (and unfinished writes) last written before
        `older_than`, for the sweep."""
        ...

    def serve(self, key: str, *, filename: str, content_type: str, expires_in: int) -> Served:
        """How to hand the object to a browser as a download named `filename`."""
        ...

    def check(self) -> str:
        """Write, read and delete a probe object; what was checked, or StorageError."""
        ...


StorageFactory = Callable[["Settings"], Storage]
_FACTORIES: dict[str, StorageFactory] = {}
_BUILT: dict[tuple[object, ...], Storage] = {}
_LOCK = threading.Lock()


def register_storage(name: str, factory: StorageFactory) -> None:
    """Make FORMRELAY_STORAGE=`name` build its storage with `factory(settings)`."""
    _FACTORIES[name] = factory


def storage_names() -> list[str]:
    _load_builtins()
    return sorted(_FACTORIES)


def get_storage(settings: Settings) -> Storage:
    """The storage the settings choose, built once per configuration and process."""
    _load_builtins()
    config = (
        settings.storage,
        settings.upload_path,
        settings.s3_bucket,
        settings.s3_prefix,
        settings.s3_sse,
        settings.aws_region,
        settings.aws_endpoint_url,
        settings.aws_access_key_id,
    )
    with _LOCK:
        found = _BUILT.get(config)
        if found is None:
            found = _BUILT[config] = _FACTORIES[settings.storage](settings)
        return found


def new_key() -> str:
    """A random object name (192 bits), safe in a path and an S3 key."""
    return secrets.token_urlsafe(24)


def _load_builtins() -> None:
    from . import builtin  # noqa: F401  (registers local and s3 on import)


_SESSION_STORAGE = "formrelay.storage"
_listening = False


def bind_session_storage(info: dict[str, object], storage: Storage) -> None:
    """Name the storage whose objects a session's commits remove (sessions made outside an
    app context: the worker's); the others use the current app's."""
    info[_SESSION_STORAGE] = storage


def init_app(app: Flask) -> None:
    """Remove the stored objects a transaction forgot (services.attachments.
    forget_after_commit) when, and only when, it commits: listened for on every session."""
    global _listening
    if _listening:
        return
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_rollback", _after_rollback)
    _listening = True


def _after_commit(session: object) -> None:
    from sqlalchemy.orm import Session

    from ..services.attachments import discard, take_forgotten

    assert isinstance(session, Session)
    keys = take_forgotten(session)
    if not keys:
        return
    storage = session.info.get(_SESSION_STORAGE)
    if storage is None:
        from flask import has_app_context

        from ..settings import get_settings

        if not has_app_context():  # left for the sweep
            return
        storage = get_storage(get_settings())
    discard(storage, keys)


def _after_rollback(session: object) -> None:
    from sqlalchemy.orm import Session

    from ..services.attachments import take_forgotten

    assert isinstance(session, Session)
    take_forgotten(session)
