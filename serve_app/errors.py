"""The one place errors become HTTP answers, in each API's documented shape.

v1 (detection): FastAPI's ``{"detail": ...}``. v3 (STT): ``{"error", "message",
"error_code", "details"}``. The path decides which shape a request gets.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from cluster.blob_signing import BlobError, BlobNotFound

log = logging.getLogger("fathom.errors")

V3_PREFIX = "/api/v3"
V3_CODES = {
    400: "BAD_REQUEST",
    401: "INVALID_API_KEY",
    403: "INSUFFICIENT_SCOPE",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


# What each error status means, as the OpenAPI schema documents it.
ERROR_DESCRIPTIONS = {
    400: "Invalid request: a failed check, a body that cannot be parsed, or a value that cannot be stored",
    401: "Missing, invalid, expired or revoked API key",
    402: "Plan limit reached",
    403: "The API key lacks the scope this operation needs",
    404: "Not found; another organization's ids answer the same",
    409: "Conflicts with the resource's current state",
    413: "Request body or upload too large",
    422: "Validation error",
    429: "Rate limit of the API key or its organization exceeded; retry after Retry-After seconds",
    503: "Database, blob storage or a deployment unavailable; retry after Retry-After seconds",
}


# Statuses any route of each API may answer; 400 includes bodies that cannot be parsed and values
# the database cannot store, 413 (v3) a declared body over the upload limits.
V1_ROUTE_ERRORS = (400, 401, 403, 503)
V3_ROUTE_ERRORS = (400, 401, 403, 413, 422, 429, 503)


class V1ErrorBody(BaseModel):
    """v1 error answer (every status but 422, whose ``detail`` is FastAPI's list of errors)."""

    detail: str


class V3ErrorBody(BaseModel):
    """v3 error answer, 422 included."""

    error: str = Field(description="HTTP reason phrase, e.g. Conflict.")
    message: str
    error_code: str = Field(description="e.g. MODEL_NOT_FOUND, MODEL_NOT_READY, RATE_LIMIT_EXCEEDED.")
    details: dict[str, Any] = Field(default_factory=dict)


def v1_errors(*codes: int, described: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a v1 route (``described`` overrides the usual meanings); 422 is left to
    FastAPI's own validation-error schema."""
    texts = {**ERROR_DESCRIPTIONS, **(described or {})}
    return {code: {"model": V1ErrorBody, "description": texts[code]} for code in codes}


def v3_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a v3 route."""
    return {code: {"model": V3ErrorBody, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


class ApiError(Exception):
    """Raised by routes; rendered in the shape of the API the request came to."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error_code = error_code
        self.details = details
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found", error_code="MODEL_NOT_FOUND" if what == "Model" else None)


def is_v3(request: Request) -> bool:
    path, root = request.url.path, request.scope.get("root_path", "")
    if root and path.startswith(root):  # deployed under a route prefix
        path = path[len(root) :]
    return path.startswith(V3_PREFIX)


def error_response(request: Request, err: ApiError) -> JSONResponse:
    if is_v3(request):
        body: dict[str, Any] = {
            "error": HTTPStatus(err.status_code).phrase,
            "message": err.message,
            "error_code": err.error_code or V3_CODES.get(err.status_code, "ERROR"),
            "details": err.details or {},
        }
    else:
        body = {"detail": err.message}
    return JSONResponse(_json_safe(jsonable_encoder(body)), status_code=err.status_code, headers=err.headers)


def _json_safe(value: Any) -> Any:
    """Echoed request input made renderable: JSON has no NaN/Infinity (Python's parser accepts
    them) and UTF-8 has no lone surrogates (JSON escapes such as "\\ud800" decode to them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(request, ApiError(exc.status_code, detail, headers=getattr(exc, "headers", None)))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        for e in errors:
            e.pop("url", None)
            if isinstance(e.get("input"), (bytes, bytearray)) or len(repr(e.get("input"))) > 500:
                e.pop("input", None)
        errors = _json_safe(errors)
        if is_v3(request):
            first = errors[0] if errors else {}
            message = f"{'.'.join(str(p) for p in first.get('loc', []))}: {first.get('msg', 'invalid request')}"
            return error_response(
                request, ApiError(422, message, error_code="VALIDATION_ERROR", details={"errors": errors})
            )
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(BlobNotFound)
    async def _blob_missing(request: Request, exc: BlobNotFound) -> JSONResponse:
        return error_response(request, ApiError(404, "Stored object not found"))

    @app.exception_handler(BlobError)
    async def _blob_down(request: Request, exc: BlobError) -> JSONResponse:
        log.warning("blob store error on %s: %s", request.url.path, type(exc).__name__)
        return error_response(request, ApiError(503, "Blob storage unavailable, retry later", headers={"Retry-After": "2"}))

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value taken from the request (PostgreSQL: text with NUL
        # characters, numbers out of range): the client's to fix, and retrying cannot help.
        log.info("database refused a value on %s: %s", request.url.path, type(exc.orig).__name__)
        return error_response(
            request, ApiError(400, "Request holds a value the database cannot store (NUL character or number out of range)")
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)  # every pooled connection busy for the pool's timeout: overload
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database error on %s: %s", request.url.path, type(exc).__name__)
        return error_response(request, ApiError(503, "Database unavailable, retry later", headers={"Retry-After": "2"}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, ApiError(500, "Internal server error"))
