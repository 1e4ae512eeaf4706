"""The local blob backend: objects as files under a directory (the embedded default of ``make run``),
presigned URLs served through the API's own ``/blobs/upload`` and ``/blobs/download`` routes."""

from __future__ import annotations

import errno
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

import pyarrow.fs

from cluster.blob_signing import (
    BlobError,
    BlobNotFound,
    BlobPolicyError,
    InvalidBlobKey,
    UploadPolicy,
    check_secret,
    sign_download,
    sign_upload,
    validate_key,
    verify_download,
    verify_upload,
)
from cluster.blob_store import BlobStore, PresignedPost, check_limits, validate_prefix

logger = logging.getLogger(__name__)

COPY_CHUNK_BYTES = 1 << 20  # 1 MiB: read size when streaming an upload to disk
STAGING_DIR = ".staging"  # under the local root; no valid key can name it (leading ".")


class PendingUpload:
    """One verified presigned POST being streamed to a staging file; see LocalBlobStore.open_post.

    Use as a context manager: leaving it without ``commit()`` removes the staging file.
    """

    def __init__(self, store: LocalBlobStore, policy: UploadPolicy) -> None:
        self.key = policy.key
        self.max_bytes = policy.max_bytes
        self.received = 0
        self._store = store
        fd, name = tempfile.mkstemp(dir=store._staging, prefix="upload-", suffix=".part")
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        """Append ``data``; beyond the signed ``max_bytes`` the upload is dropped (413)."""
        if self.received + len(data) > self.max_bytes:
            self.abort()
            raise BlobPolicyError(
                413, f"upload exceeds the {self.max_bytes}-byte limit signed for this URL "
                "(the declared file size); request a new URL with the right size",
            )
        self._file.write(data)
        self.received += len(data)

    def commit(self) -> str:
        """Publish the object under its key, unless one already exists (409); returns the key."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        try:
            self._store._publish(self._tmp, self._store._path(self.key), overwrite=False)
        except FileExistsError as e:
            self.abort()
            raise BlobPolicyError(409, f"{self.key!r} was already uploaded; upload URLs are single-use") from e
        logger.info("blob upload stored key=%s bytes=%d", self.key, self.received)
        return self.key

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> PendingUpload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class LocalBlobStore(BlobStore):
    """Objects as files under ``root``; presigned URLs are HMAC-signed grants served by the API.

    Writes land in ``root/.staging`` and are published with a rename (overwrite) or a hard link
    (create-once uploads), so a key only ever names a complete file. ``clock`` returns unix
    seconds and decides URL expiry.
    """

    def __init__(
        self, root: Path, *, secret: bytes, public_url: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = check_secret(secret)
        self._root = Path(root).resolve()
        self._staging = self._root / STAGING_DIR
        self._staging.mkdir(parents=True, exist_ok=True)
        self._public_url = public_url.rstrip("/")
        self._clock = clock

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"LocalBlobStore(root={str(self._root)!r}, public_url={self._public_url!r})"

    def _path(self, key: str) -> Path:
        path = self._root / validate_key(key)
        real = os.path.realpath(path)
        if os.path.commonpath([real, str(self._root)]) != str(self._root):
            raise InvalidBlobKey(f"blob key {key!r} resolves outside the store root")
        return path

    def _publish(self, tmp: Path, final: Path, *, overwrite: bool) -> None:
        """Move a complete staging file to ``final``; FileExistsError when not ``overwrite``."""
        for attempt in range(3):  # a concurrent delete_prefix may prune the fresh parent dir
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                if overwrite:
                    os.replace(tmp, final)
                else:
                    try:
                        os.link(tmp, final)  # atomic create-if-absent
                    except OSError as e:
                        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                            raise
                        if final.exists():  # filesystem without hard links: best effort
                            raise FileExistsError(errno.EEXIST, "exists", str(final)) from e
                        os.replace(tmp, final)
                    tmp.unlink(missing_ok=True)
                return
            except FileNotFoundError:
                if attempt == 2 or not tmp.exists():
                    raise

    def put_bytes(self, key: str, data: bytes) -> None:
        final = self._path(key)
        fd, name = tempfile.mkstemp(dir=self._staging, prefix="put-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._publish(Path(name), final, overwrite=True)
        finally:
            Path(name).unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise BlobNotFound(f"no blob stored under {key!r}") from e

    def size(self, key: str) -> int | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, NotADirectoryError):
            pass

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        parent_key, _, partial = prefix.rpartition("/")
        base = self._root / parent_key if parent_key else self._root
        if not base.is_dir():
            return 0
        removed = 0
        for entry in os.scandir(base):
            if not entry.name.startswith(partial) or (base == self._root and entry.name == STAGING_DIR):
                continue  # files other writers put below a prefix (dot-files included) go too
            if entry.is_dir(follow_symlinks=False):
                for dirpath, dirnames, filenames in os.walk(entry.path, topdown=False):
                    for name in filenames:
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
                    for name in dirnames:
                        _rmdir_if_empty(os.path.join(dirpath, name))
                _rmdir_if_empty(entry.path)
            else:
                os.unlink(entry.path)
                removed += 1
        if not partial and base != self._root:
            _rmdir_if_empty(str(base))
        return removed

    def presigned_post(
        self, key: str, *, max_bytes: int, expires_s: int, content_type: str | None = None
    ) -> PresignedPost:
        check_limits(max_bytes, expires_s)
        policy = UploadPolicy(validate_key(key), max_bytes, int(self._clock()) + expires_s, content_type)
        return PresignedPost(f"{self._public_url}/blobs/upload", sign_upload(self._secret, policy))

    def open_post(self, fields: Mapping[str, str]) -> PendingUpload:
        """Verify a presigned POST's form fields and open its staging file; BlobPolicyError.

        Everything is checked before a file byte is accepted: the signature, the key field,
        expiry, the content type, and that the key is not stored yet (409: URL re-use).
        """
        policy = verify_upload(self._secret, fields, self._clock())
        try:
            self._path(policy.key)
        except InvalidBlobKey as e:
            raise BlobPolicyError(400, str(e)) from e
        if self.exists(policy.key):
            raise BlobPolicyError(409, f"{policy.key!r} was already uploaded; upload URLs are single-use")
        return PendingUpload(self, policy)

    def accept_post(self, fields: Mapping[str, str], file: BinaryIO) -> str:
        """Verify a presigned POST and stream ``file`` into the store; returns the key.

        The size cap is enforced while streaming (413, nothing left on disk); the object
        appears atomically once complete. Raises BlobPolicyError.
        """
        with self.open_post(fields) as upload:
            while chunk := file.read(COPY_CHUNK_BYTES):
                upload.write(chunk)
            return upload.commit()

    def presigned_get(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        check_limits(0, expires_s)
        query = sign_download(self._secret, key, int(self._clock()) + expires_s, filename)
        return f"{self._public_url}/blobs/download?{urlencode(query, quote_via=quote, safe='/')}"

    def resolve_get(self, query: Mapping[str, str]) -> tuple[Path, str | None]:
        """Verify a download URL's query; returns (file path, filename or None).

        Raises BlobPolicyError (400 malformed, 403 bad signature or expired) or BlobNotFound.
        """
        key, filename = verify_download(self._secret, query, self._clock())
        try:
            path = self._path(key)
        except InvalidBlobKey as e:
            raise BlobPolicyError(400, str(e)) from e
        if self.size(key) is None:
            raise BlobNotFound(f"no blob stored under {key!r}")
        return path, filename

    def arrow_filesystem(self) -> pyarrow.fs.FileSystem:
        return pyarrow.fs.LocalFileSystem()

    def arrow_path(self, key: str) -> str:
        return str(self._path(key))

    def ping(self) -> None:
        if not (self._root.is_dir() and os.access(self._staging, os.W_OK)):
            raise BlobError(f"local blob root {self._root} is missing or not writable")


def _rmdir_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass  # not empty (a concurrent writer) or already gone
