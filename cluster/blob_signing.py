"""Blob keys and the signed grants behind the local blob store's presigned URLs.

The API server signs a grant (an upload policy, or a download's key/expiry/filename) with
HMAC-SHA256 under the deployment secret; the storage route verifies it statelessly, the way
S3 verifies its POST policies. Each grant kind signs under its own domain tag, so a signature
minted for a download can never be replayed as an upload policy or the other way round.
The error types live here because grant verification raises them; ``cluster.blobs``
re-exports them as part of the store's interface.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

MIN_SECRET_BYTES = 16  # 128-bit floor for the HMAC key
MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length
UPLOAD_DOMAIN = b"fathom.blob.upload.v1"
DOWNLOAD_DOMAIN = b"fathom.blob.download.v1"
POST_FIELDS = frozenset({"key", "policy", "signature", "Content-Type"})
_CONTROL_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")  # control, format, surrogate, separators
_RFC5987_SAFE = "!#$&+-.^_`|~"  # attr-chars left unescaped in filename*=UTF-8''...


class BlobError(Exception):
    """A blob store operation failed (unreachable backend, denied access, ...)."""


class BlobNotFound(BlobError):
    """No object is stored under the key."""


class InvalidBlobKey(ValueError):
    """A key that could escape the store's namespace or is not a plain relative path.

    A ValueError rather than a BlobError: keys are server-generated, so this is a caller's
    bug (or an attack), never a storage outage to retry.
    """


class BlobPolicyError(BlobError):
    """A presigned upload or download was rejected; ``status_code`` is the HTTP answer.

    400 malformed request, 403 bad/tampered signature or expired, 409 already uploaded
    (the URL was re-used), 413 larger than the signed limit.
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def validate_key(key: str) -> str:
    """Return ``key`` when it is a plain relative path such as ``datasets/<id>/audio/<id>.wav``.

    Keys are server-generated; this is defence in depth against path traversal. Refused:
    empty keys, absolute paths, backslashes, empty / ``.`` / ``..`` / dot-leading segments,
    NUL and other control or format characters, and keys over 1024 UTF-8 bytes.
    """
    if not isinstance(key, str) or not key:
        raise InvalidBlobKey(f"blob key must be a non-empty string, got {key!r}")
    bad = next((c for c in key if unicodedata.category(c) in _CONTROL_CATEGORIES), None)
    if bad is not None:
        raise InvalidBlobKey(f"blob key {key!r} contains control character U+{ord(bad):04X}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidBlobKey(f"blob key is longer than {MAX_KEY_BYTES} UTF-8 bytes")
    if "\\" in key:
        raise InvalidBlobKey(f"blob key {key!r} contains a backslash; separate segments with '/'")
    if key.startswith("/"):
        raise InvalidBlobKey(f"blob key {key!r} is absolute; keys are relative paths")
    for segment in key.split("/"):
        if not segment:
            raise InvalidBlobKey(f"blob key {key!r} has an empty path segment")
        if segment.startswith("."):
            raise InvalidBlobKey(
                f"blob key {key!r} has segment {segment!r}; segments may not start with '.'"
            )
    return key


def check_secret(secret: bytes) -> bytes:
    """Return ``secret`` when it is long enough to key HMAC-SHA256 grants."""
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        got = len(secret) if isinstance(secret, bytes) else type(secret).__name__
        raise ValueError(f"blob signing secret must be at least {MIN_SECRET_BYTES} bytes, got {got}")
    return secret


def _sign(secret: bytes, domain: bytes, payload: bytes) -> str:
    return hmac.new(secret, domain + b"\x00" + payload, hashlib.sha256).hexdigest()


def _signature_matches(secret: bytes, domain: bytes, payload: bytes, signature: str) -> bool:
    expected = _sign(secret, domain, payload).encode("ascii")
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


@dataclass(frozen=True)
class UploadPolicy:
    """What one presigned POST may do: write ``key`` once, at most ``max_bytes``, until ``expires``.

    ``expires`` is a unix time in whole seconds; ``content_type``, when set, must come back
    unchanged in the form's ``Content-Type`` field.
    """

    key: str
    max_bytes: int
    expires: int
    content_type: str | None = None

    def encode(self) -> str:
        """Base64url (unpadded) of the canonical JSON; this exact string is what gets signed."""
        body: dict[str, object] = {"key": self.key, "max_bytes": self.max_bytes, "expires": self.expires}
        if self.content_type is not None:
            body["content_type"] = self.content_type
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str) -> UploadPolicy:
        """Parse an encoded policy; raises ValueError naming what is malformed."""
        try:
            body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (binascii.Error, ValueError) as e:
            raise ValueError("policy is not base64url-encoded JSON") from e
        if not isinstance(body, dict):
            raise ValueError("policy must be a JSON object")
        key, content_type = body.get("key"), body.get("content_type")
        if not isinstance(key, str):
            raise ValueError("policy.key must be a string")
        for name in ("max_bytes", "expires"):
            value = body.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"policy.{name} must be a non-negative integer")
        if content_type is not None and not isinstance(content_type, str):
            raise ValueError("policy.content_type must be a string when present")
        return cls(key, body["max_bytes"], body["expires"], content_type)


def sign_upload(secret: bytes, policy: UploadPolicy) -> dict[str, str]:
    """The form fields of a presigned POST granting ``policy`` (the client adds ``file``)."""
    token = policy.encode()
    fields = {"key": policy.key, "policy": token, "signature": _sign(secret, UPLOAD_DOMAIN, token.encode())}
    if policy.content_type is not None:
        fields["Content-Type"] = policy.content_type
    return fields


def verify_upload(secret: bytes, fields: Mapping[str, str], now: float) -> UploadPolicy:
    """The signed policy of a presigned POST's form fields; raises BlobPolicyError.

    Order matters: the signature is checked before the policy is parsed, so unsigned input
    only ever earns a 403, and expiry is only reported for genuine URLs.
    """
    missing = sorted({"key", "policy", "signature"} - fields.keys())
    if missing:
        raise BlobPolicyError(400, f"missing form field(s) {missing}; send every upload field plus 'file'")
    unknown = sorted(fields.keys() - POST_FIELDS)
    if unknown:
        raise BlobPolicyError(400, f"unexpected form field(s) {unknown}; expected {sorted(POST_FIELDS)}")
    token = fields["policy"]
    if not _signature_matches(secret, UPLOAD_DOMAIN, token.encode("utf-8", "replace"), fields["signature"]):
        raise BlobPolicyError(403, "upload policy signature does not match")
    try:
        policy = UploadPolicy.decode(token)
        validate_key(policy.key)
    except ValueError as e:
        raise BlobPolicyError(400, f"malformed upload policy: {e}") from e
    if fields["key"] != policy.key:
        raise BlobPolicyError(403, "form field 'key' differs from the key this URL was signed for")
    if now >= policy.expires:
        raise BlobPolicyError(403, f"upload URL expired at unix time {policy.expires}; request a new one")
    if policy.content_type is not None and fields.get("Content-Type") != policy.content_type:
        raise BlobPolicyError(403, f"form field 'Content-Type' must be {policy.content_type!r} as signed")
    return policy


def _download_payload(key: str, expires: int, filename: str | None) -> bytes:
    # A JSON array: unambiguous borders between the signed values.
    return json.dumps([key, expires, filename], ensure_ascii=True, separators=(",", ":")).encode()


def sign_download(secret: bytes, key: str, expires: int, filename: str | None) -> dict[str, str]:
    """Query parameters of a download URL for ``key`` valid until unix time ``expires``."""
    query = {"key": validate_key(key), "expires": str(expires)}
    if filename is not None:
        query["filename"] = filename
    query["signature"] = _sign(secret, DOWNLOAD_DOMAIN, _download_payload(key, expires, filename))
    return query


def verify_download(secret: bytes, query: Mapping[str, str], now: float) -> tuple[str, str | None]:
    """(key, filename) granted by a download URL's query; raises BlobPolicyError."""
    missing = sorted({"key", "expires", "signature"} - query.keys())
    if missing:
        raise BlobPolicyError(400, f"missing query parameter(s) {missing}")
    key, filename = query["key"], query.get("filename")
    try:
        expires = int(query["expires"])
    except ValueError as e:
        raise BlobPolicyError(400, "query parameter 'expires' must be an integer unix time") from e
    payload = _download_payload(key, expires, filename)
    if not _signature_matches(secret, DOWNLOAD_DOMAIN, payload, query["signature"]):
        raise BlobPolicyError(403, "download URL signature does not match")
    if now >= expires:
        raise BlobPolicyError(403, f"download URL expired at unix time {expires}; request a new one")
    try:
        validate_key(key)
    except InvalidBlobKey as e:
        raise BlobPolicyError(400, str(e)) from e
    return key, filename


def content_disposition(filename: str) -> str:
    """RFC 6266 ``attachment`` header value for ``filename``, pure ASCII whatever the name.

    ``filename*`` carries the UTF-8 name (path separators and control characters replaced,
    so it cannot name a directory or break the header); ``filename`` is an ASCII fallback
    for clients that ignore ``filename*``.
    """
    clean = "".join(
        "_" if ch in "/\\" or unicodedata.category(ch) in _CONTROL_CATEGORIES else ch for ch in filename
    ).strip() or "download"
    ascii_name = unicodedata.normalize("NFKD", clean).encode("ascii", "ignore").decode("ascii")
    fallback = "".join("_" if ch in '"\\;%' else ch for ch in ascii_name).strip() or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(clean, safe=_RFC5987_SAFE)}"
