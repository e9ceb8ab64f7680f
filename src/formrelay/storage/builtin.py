"""The storage backends formrelay ships, registered as an extension would register its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import Storage, register_storage

if TYPE_CHECKING:
    from ..settings import Settings


def _local(settings: Settings) -> Storage:
    from .local import LocalStorage

    return LocalStorage(settings.upload_path)


def _s3(settings: Settings) -> Storage:
    from .s3 import S3Storage

    return S3Storage.from_settings(settings)


register_storage("local", _local)
register_storage("s3", _s3)
