"""The blob store interface both backends implement: a flat key -> bytes namespace with presigned URLs.

Backends: cluster.blobs_local.LocalBlobStore (files under a directory, URLs served by the
API) and cluster.blobs_s3.S3BlobStore (any S3-compatible service, URLs pointing at it);
cluster.blobs.make_blob_store picks one from the settings. Clients upload with a plain
multipart POST of ``upload_fields`` plus ``file`` and download with a plain GET either way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import pyarrow.fs

from cluster.blob_signing import InvalidBlobKey, validate_key


@dataclass(frozen=True)
class PresignedPost:
    """Where and what to POST: ``requests.post(url, data=fields, files={"file": f})``."""

    url: str
    fields: dict[str, str]


def validate_prefix(prefix: str) -> str:
    """A non-empty key prefix; its last segment may be partial or end in '/'."""
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise InvalidBlobKey(f"blob prefix must name something below the root, got {prefix!r}")
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def check_limits(max_bytes: int, expires_s: int) -> None:
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    if expires_s <= 0:
        raise ValueError(f"expires_s must be > 0, got {expires_s}")


class BlobStore(ABC):
    """Flat key -> bytes namespace; keys are '/'-separated relative paths (``validate_key``)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing it atomically: readers never see half an object."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; raises BlobNotFound."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when absent."""

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; absent objects are fine."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix`` (a string prefix, as in S3).

        Returns how many objects were removed. Pass ``"datasets/<id>/"`` (trailing slash) to
        stay inside one directory.
        """

    @abstractmethod
    def presigned_post(
        self, key: str, *, max_bytes: int, expires_s: int, content_type: str | None = None
    ) -> PresignedPost:
        """A one-key upload form, valid ``expires_s`` seconds, for at most ``max_bytes``."""

    @abstractmethod
    def presigned_get(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        """A download URL for ``key``; ``filename`` sets an attachment Content-Disposition."""

    @abstractmethod
    def arrow_filesystem(self) -> pyarrow.fs.FileSystem:
        """Filesystem for ray.data parquet I/O and Ray Train storage (picklable)."""

    @abstractmethod
    def arrow_path(self, key: str) -> str:
        """Path of ``key`` inside ``arrow_filesystem()``."""

    @abstractmethod
    def ping(self) -> None:
        """Raise BlobError when the store cannot be reached or written."""
