"""The audio an upload may declare: MIME types and their file extensions.

A leaf module, so that storage (cluster.uploads), pipelines and routes agree on one list
without importing the decoder; data_pipelines.audio decodes every type listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from types import MappingProxyType

CONTENT_TYPES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "audio/wav": (".wav",),
        "audio/x-wav": (".wav",),
        "audio/wave": (".wav",),
        "audio/vnd.wave": (".wav",),
        "audio/mpeg": (".mp3",),
        "audio/mp3": (".mp3",),
        "audio/mp4": (".m4a", ".mp4"),
        "audio/x-m4a": (".m4a",),
        "audio/ogg": (".ogg", ".oga", ".opus"),
        "audio/opus": (".opus",),
        "audio/flac": (".flac",),
        "audio/x-flac": (".flac",),
        "audio/webm": (".webm", ".weba"),
        "audio/aac": (".aac",),
        "audio/x-aac": (".aac",),
        "application/octet-stream": (),  # generic upload: the filename extension decides
    }
)
SUPPORTED_EXTENSIONS = frozenset(ext for exts in CONTENT_TYPES.values() for ext in exts)


def is_supported(content_type: str, filename: str) -> bool:
    """Whether an upload's declared type (or, for a generic type, its extension) is audio we read.

    The decoder sniffs the bytes, so a specific audio MIME type is enough; parameters such
    as ``; codecs=opus`` are ignored.
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in ("", "application/octet-stream"):
        return PurePosixPath((filename or "").replace("\\", "/")).suffix.lower() in SUPPORTED_EXTENSIONS
    return mime in CONTENT_TYPES
