"""Storage endpoints of the local blob backend: presigned POST uploads and GET downloads.

These routes take no API key: the HMAC signature in the form or the query is the credential.
The upload body is parsed as a stream. The signed fields precede the file part (as S3 also
requires), so the signature, key, expiry and single use are checked before a file byte is
accepted, and the file then streams into the store under the signed size cap: an
unauthenticated caller cannot make the server spool an arbitrary body anywhere.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from cluster.blob_signing import BlobNotFound, BlobPolicyError, content_disposition
from cluster.blobs_local import LocalBlobStore, PendingUpload
from serve_app.errors import v1_errors

logger = logging.getLogger(__name__)

router = APIRouter(tags=["blobs"])

FILE_FIELD = "file"
FIELD_MAX_BYTES = 8 * 1024  # one non-file form field; a signed policy is ~300 B
MAX_FIELDS = 8
FLUSH_BYTES = 1 << 20  # 1 MiB of file data per disk write (each one hops to a worker thread)
DRAIN_MAX_BYTES = 16 << 20  # 16 MiB: body read and dropped after a rejection, so the client sees it
NOT_ENABLED = {"detail": "Local blob storage is not enabled"}

# The routes parse their input by hand (streamed form, signed query); these document it.
_TEXT = {"type": "string"}
_BYTES = {"type": "string", "format": "binary"}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "key": _TEXT,
                        "policy": _TEXT,
                        "signature": _TEXT,
                        "Content-Type": _TEXT,
                        FILE_FIELD: _BYTES,
                    },
                    "required": ["key", "policy", "signature", FILE_FIELD],
                    "description": "The upload fields of the presigned POST, then 'file' as the last part.",
                }
            }
        },
    }
}
DOWNLOAD_QUERY = {
    "parameters": [
        {"name": name, "in": "query", "required": name != "filename", "schema": schema}
        for name, schema in (
            ("key", _TEXT), ("expires", {"type": "integer"}), ("filename", _TEXT), ("signature", _TEXT)
        )
    ]
}
SIGNED_URL_ERRORS = {
    400: "Malformed or incomplete upload form or download query",
    403: "The signature does not match, or the URL expired",
    404: "Local blob storage is not enabled, or the object does not exist",
    409: "Already uploaded: upload URLs are single-use",
    413: "The file exceeds the size signed into the upload URL",
}


def _local_store(request: Request) -> LocalBlobStore | None:
    store = getattr(request.app.state, "blobs", None)
    return store if isinstance(store, LocalBlobStore) else None


class _MultipartForm:
    """Callback state of one streamed multipart body: small fields, then the file's bytes."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.file_started = False
        self.file_done = False
        self.ended = False
        self._pending: list[bytes] = []
        self.pending_bytes = 0
        self._in_file = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._field_name = ""
        self._field_value = bytearray()

    def parser(self, boundary: bytes) -> MultipartParser:
        return MultipartParser(boundary, {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        })

    def take_file_data(self) -> bytes:
        data = b"".join(self._pending)
        self._pending.clear()
        self.pending_bytes = 0
        return data

    def _on_part_begin(self) -> None:
        self._disposition = b""
        self._field_value = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise BlobPolicyError(400, "a form part has no Content-Disposition name")
        if self.file_started:
            raise BlobPolicyError(400, f"form field {name!r} follows the file; 'file' must be the last field")
        if name == FILE_FIELD:
            self.file_started = self._in_file = True
            return
        if name in self.fields or len(self.fields) >= MAX_FIELDS:
            raise BlobPolicyError(400, f"form field {name!r} is repeated or one field too many")
        self._field_name = name

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(data[start:end])
            self.pending_bytes += end - start
            return
        self._field_value += data[start:end]
        if len(self._field_value) > FIELD_MAX_BYTES:
            raise BlobPolicyError(400, f"form field {self._field_name!r} exceeds {FIELD_MAX_BYTES} bytes")

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file, self.file_done = False, True
            return
        try:
            self.fields[self._field_name] = self._field_value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BlobPolicyError(400, f"form field {self._field_name!r} is not UTF-8") from e

    def _on_end(self) -> None:
        self.ended = True


async def _receive_upload(store: LocalBlobStore, content_type: str, chunks: AsyncIterator[bytes]) -> str:
    """Stream a presigned POST body into ``store``; returns the stored key or raises BlobPolicyError."""
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise BlobPolicyError(400, "expected a multipart/form-data body with the upload fields and 'file'")
    form = _MultipartForm()
    try:
        parser = form.parser(params[b"boundary"])
    except FormParserError as e:
        raise BlobPolicyError(400, f"malformed multipart body: {e}") from e
    upload: PendingUpload | None = None
    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except FormParserError as e:
                raise BlobPolicyError(400, f"malformed multipart body: {e}") from e
            if form.file_started and upload is None:
                upload = await anyio.to_thread.run_sync(store.open_post, form.fields)
            if upload is not None and (form.pending_bytes >= FLUSH_BYTES or form.file_done):
                await anyio.to_thread.run_sync(upload.write, form.take_file_data())
        if not form.ended:
            raise BlobPolicyError(400, "multipart body ended before its closing boundary")
        if upload is None:
            raise BlobPolicyError(400, f"missing form field {FILE_FIELD!r}")
        return await anyio.to_thread.run_sync(upload.commit)
    finally:
        if upload is not None:
            upload.abort()  # no-op after a commit: the staging file is already gone


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read (and drop) what the client is still sending, up to DRAIN_MAX_BYTES.

    Closing a socket with unread request bytes makes the kernel reset the connection, and
    clients that send their whole body before reading (requests does) lose the answer.
    """
    drained = 0
    try:
        async for chunk in chunks:
            drained += len(chunk)
            if drained > DRAIN_MAX_BYTES:
                return
    except ClientDisconnect:
        return


@router.post(
    "/blobs/upload",
    status_code=204,
    response_class=Response,
    openapi_extra=UPLOAD_BODY,
    responses=v1_errors(400, 403, 404, 409, 413, described=SIGNED_URL_ERRORS),
)
async def upload_blob(request: Request) -> Response:
    """Presigned POST target: the upload fields, then ``file``. 204 when stored."""
    store = _local_store(request)
    if store is None:
        return JSONResponse(NOT_ENABLED, status_code=404)
    chunks = request.stream()
    try:
        await _receive_upload(store, request.headers.get("content-type", ""), chunks)
    except BlobPolicyError as e:
        logger.info("blob upload rejected (%d): %s", e.status_code, e)
        await _drain(chunks)
        return JSONResponse({"detail": str(e)}, status_code=e.status_code)
    except ClientDisconnect:
        logger.info("blob upload abandoned: the client disconnected mid-body")
        return Response(status_code=400)
    finally:
        await chunks.aclose()
    return Response(status_code=204)


@router.get(
    "/blobs/download",
    response_class=FileResponse,
    openapi_extra=DOWNLOAD_QUERY,
    responses={
        200: {"description": "The object's bytes", "content": {"*/*": {"schema": _BYTES}}},
        **v1_errors(400, 403, 404, described=SIGNED_URL_ERRORS),
    },
)
async def download_blob(request: Request) -> Response:
    """Presigned GET target: streams exactly the one object the signed query names."""
    store = _local_store(request)
    if store is None:
        return JSONResponse(NOT_ENABLED, status_code=404)
    try:
        path, filename = store.resolve_get(request.query_params)
    except BlobPolicyError as e:
        logger.info("blob download rejected (%d): %s", e.status_code, e)
        return JSONResponse({"detail": str(e)}, status_code=e.status_code)
    except BlobNotFound:
        return JSONResponse({"detail": "Stored object not found"}, status_code=404)
    media_type = mimetypes.guess_type(filename or path.name)[0] or "application/octet-stream"
    headers = {"Content-Disposition": content_disposition(filename)} if filename else None
    return FileResponse(path, media_type=media_type, headers=headers)
