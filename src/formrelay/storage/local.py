"""Uploads in a local folder: <root>/<first two characters of the key>/<key>."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from . import Served, StorageError, new_key

PARTIAL = ".part"


class LocalWriter:
    """Writes <key>.part beside the object, then fsyncs and renames it into place."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.partial = final.with_name(final.name + PARTIAL)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO | None = open(self.partial, "xb")  # noqa: SIM115  (closed in close/abort)
        except OSError as exc:
            raise StorageError(f"cannot write {self.partial}: {exc.strerror or exc}") from None

    def write(self, data: bytes) -> None:
        assert self._file is not None, "written after close"
        try:
            self._file.write(data)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self.partial}: {exc.strerror or exc}") from None

    def close(self) -> None:
        assert self._file is not None, "closed twice"
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self.partial, self.final)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot store {self.final}: {exc.strerror or exc}") from None

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.partial.unlink(missing_ok=True)


class LocalStorage:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise StorageError(f"not a storage key: {key!r}")
        return self.root / key[:2] / key

    def writer(self, key: str) -> LocalWriter:
        return LocalWriter(self.path(key))

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from None

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror or exc}") from None

    def keys(self, older_than: datetime) -> Iterator[str]:
        if not self.root.is_dir():
            return
        cutoff = older_than.astimezone(UTC).timestamp()
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir():
                continue
            for entry in sorted(shard.iterdir()):
                try:
                    if entry.stat().st_mtime >= cutoff:
                        continue
                except FileNotFoundError:
                    continue
                # A .part file is a write a killed process left unfinished: no row names it,
                # so the sweep deletes it like any orphan.
                yield entry.name

    def check(self) -> str:
        probe = new_key()
        writer = self.writer(probe)
        writer.write(b"formrelay storage check")
        writer.close()
        with self.open(probe) as stream:
            ok = stream.read() == b"formrelay storage check"
        self.delete(probe)
        if not ok:
            raise StorageError(f"{self.root} gave back other bytes than were written")
        return f"wrote, read and deleted a file in {self.root}"

    def serve(self, key: str, *, filename: str, content_type: str, expires_in: int) -> Served:
        path = self.path(key)
        if not path.is_file():
            raise StorageError(f"no stored object {key}")
        return Served(path=path, relative=f"{key[:2]}/{key}")
