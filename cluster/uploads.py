"""The presigned-upload pattern shared by dataset audio and inference files.

1. ``start_upload``: the API checks the declared size and format and signs a one-key POST
   form capped at the declared size; the client POSTs ``fields`` plus ``file`` to storage.
2. ``finish_upload`` (on confirm): the object must exist, be non-empty and be no larger
   than declared. Storage may not enforce the signed size cap (moto does not), so this
   check is the authoritative one.

Keys are always server-generated (ids only). The client's filename is kept for display
and downloads after ``display_filename``; it never reaches a blob key or a filesystem path.
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

from cluster.blob_store import BlobStore, PresignedPost
from schemas.audio_formats import CONTENT_TYPES, SUPPORTED_EXTENSIONS, is_supported
from schemas.settings import Settings

MAX_FILENAME_CHARS = 500
# Characters removed from display names: C0/C1 controls, line/paragraph separators and the
# bidirectional overrides that can make "evil\u202egpj.exe" read as "evilexe.jpg".
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})  # control, unpaired surrogate, separators


class UploadError(Exception):
    """An upload refused for a reason the client can fix; ``status_code`` is the HTTP answer."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def display_filename(filename: str) -> str:
    """The last path component of ``filename`` without control characters, for display only.

    ``"C:\\\\rec/take 1.wav"`` -> ``"take 1.wav"``; unicode is kept. Raises UploadError (400)
    when nothing is left or the result is over 500 characters.
    """
    parts = [p for p in filename.replace("\\", "/").split("/") if p.strip() not in ("", ".", "..")]
    name = parts[-1] if parts else ""
    name = "".join(
        ch for ch in name if ch not in _BIDI_CONTROLS and unicodedata.category(ch) not in _DROPPED_CATEGORIES
    ).strip()
    if not name:
        raise UploadError(400, f"filename {filename!r} has no name left after removing path components and control characters")
    if len(name) > MAX_FILENAME_CHARS:
        raise UploadError(400, f"filename is {len(name)} characters; at most {MAX_FILENAME_CHARS} are allowed")
    return name


def _mime(content_type: str) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def safe_extension(filename: str, content_type: str) -> str:
    """A known audio extension such as ``".wav"`` for downloads, or ``""`` when none fits.

    The filename's own extension wins when it is a supported one; otherwise the content
    type's usual extension. Never derived from anything outside ``SUPPORTED_EXTENSIONS``.
    """
    suffix = PurePosixPath((filename or "").replace("\\", "/")).suffix.lower()
    if suffix in SUPPORTED_EXTENSIONS:
        return suffix
    exts = CONTENT_TYPES.get(_mime(content_type), ())
    return exts[0] if exts else ""


def _supported_formats() -> str:
    types = ", ".join(t for t in CONTENT_TYPES if t != "application/octet-stream")
    exts = ", ".join(sorted(SUPPORTED_EXTENSIONS))
    return f"content types {types}; or application/octet-stream with a filename ending in {exts}"


def start_upload(
    blobs: BlobStore, settings: Settings, *, key: str, declared_size: int, content_type: str, filename: str
) -> PresignedPost:
    """Check an announced upload and sign a POST form for it, capped at ``declared_size`` bytes.

    Raises UploadError (400) for a size outside 1..``settings.max_upload_bytes`` or a format
    the decoder does not read.
    """
    if declared_size <= 0:
        raise UploadError(400, f"file size must be positive, got {declared_size} bytes")
    if declared_size > settings.max_upload_bytes:
        raise UploadError(
            400, f"file size {declared_size} bytes is over the limit of {settings.max_upload_bytes} bytes"
        )
    if not is_supported(content_type, filename):
        raise UploadError(
            400, f"unsupported audio format (content type {content_type!r}, filename {filename!r}); "
            f"supported: {_supported_formats()}",
        )
    return blobs.presigned_post(
        key, max_bytes=declared_size, expires_s=settings.upload_url_expiry_s, content_type=content_type
    )


def finish_upload(blobs: BlobStore, *, key: str, declared_size: int) -> int:
    """Verify the object a client uploaded under ``key``; returns its size in bytes.

    409 when nothing was uploaded yet; 400 when it is empty or larger than declared (the
    object is then deleted, so the client can upload again to a fresh URL).
    """
    size = blobs.size(key)
    if size is None:
        raise UploadError(409, "upload not found: POST the file to upload_url first")
    if size > declared_size:
        blobs.delete(key)
        raise UploadError(
            400, f"uploaded {size} bytes, more than the declared {declared_size}; "
            "the upload was discarded, request a new upload URL with the right file size",
        )
    if size == 0:
        blobs.delete(key)
        raise UploadError(400, "uploaded file is empty (0 bytes); the upload was discarded")
    return size
