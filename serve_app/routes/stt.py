"""v3 transcription (``POST /api/v3/stt``) and the multipart audio intake it shares with
training-data uploads (``serve_app.routes.custom_models``).

The ingress validates (model, language, size, format) and hands the bytes to the
``transcriber`` deployment, multiplexed by model: a custom model by its checkpoint key,
a base model by its name.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster.accounts import Principal
from cluster import registry
from cluster.stt_tables import CustomModel
from cluster.uploads import UploadError, display_filename
from data_pipelines.audio import AudioDecodeError
from schemas.audio_formats import CONTENT_TYPES
from schemas.auth import STT
from schemas.common import Text
from schemas.settings import Settings
from schemas.stt import (
    BASE_MODELS,
    LANGUAGES,
    MODEL_KEY_PREFIX,
    TrainingStatus,
    Transcription,
)
from serve_app.deps import SessionDep, SettingsDep, require
from serve_app.errors import V3_ROUTE_ERRORS, ApiError, v3_errors
from serve_app.rate_limits import rate_limited

log = logging.getLogger("fathom.stt")

AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".m4a", ".aac", ".ogg")  # the documented upload formats
AUDIO_PART_TYPES = "audio/mpeg, audio/wav, audio/flac, audio/mp4, audio/aac, audio/ogg"  # the same, as media types
MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries, part headers and small fields of one upload
MAX_BOOST_TERMS = 100
MAX_BOOST_TERM_CHARS = 100


class BoundedBodyRoute(APIRoute):
    """Refuses (413) a body whose declared Content-Length exceeds what the upload fields may hold,
    before it is read: the multipart parser would otherwise spool all of it to disk first."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            settings: Settings = request.app.state.settings
            limit = settings.stt_max_audio_bytes + settings.stt_max_transcript_bytes + MULTIPART_OVERHEAD_BYTES
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ApiError(
                    413,
                    f"Request body of {int(declared)} bytes is over the limit of {limit} bytes",
                    error_code="PAYLOAD_TOO_LARGE",
                    details={"size_bytes": int(declared), "max_bytes": limit},
                )
            return await handler(request)

        return bounded


def multipart_encoding(**parts: str) -> dict:
    """``openapi_extra`` documenting the media types of a multipart body's parts; a file part
    is also accepted under another type when its filename has a supported extension."""
    encoding = {name: {"contentType": content_type} for name, content_type in parts.items()}
    return {"requestBody": {"content": {"multipart/form-data": {"encoding": encoding}}}}


def read_upload(upload: UploadFile, max_bytes: int, what: str) -> bytes:
    size = upload.size if upload.size is not None else len(upload.file.read())
    if size > max_bytes:
        raise ApiError(
            413,
            f"{what} is {size} bytes; the limit is {max_bytes} bytes",
            error_code="PAYLOAD_TOO_LARGE",
            details={"field": what, "size_bytes": size, "max_bytes": max_bytes},
        )
    upload.file.seek(0)
    return upload.file.read()


def upload_filename(upload: UploadFile, field: str, default: str) -> str:
    """The part's filename for display (path parts and control characters dropped);
    400 INVALID_FILENAME when nothing is left or it is too long."""
    try:
        return display_filename(upload.filename or default)
    except UploadError as e:
        raise ApiError(400, f"{field}: {e.message}", error_code="INVALID_FILENAME", details={"field": field}) from e


def check_audio_format(upload: UploadFile) -> None:
    """By extension; a file without one is judged by its declared content type."""
    suffix = PurePosixPath(upload_filename(upload, "audio_file", "audio")).suffix.lower()
    mime = (upload.content_type or "").split(";", 1)[0].strip().lower()
    ok = suffix in AUDIO_EXTENSIONS or (not suffix and any(e in AUDIO_EXTENSIONS for e in CONTENT_TYPES.get(mime, ())))
    if not ok:
        raise ApiError(
            400,
            f"audio_file {upload.filename!r} is not a supported format; use one of {', '.join(AUDIO_EXTENSIONS)}",
            error_code="UNSUPPORTED_FORMAT",
            details={"field": "audio_file", "supported": list(AUDIO_EXTENSIONS)},
        )


def audio_upload_bytes(upload: UploadFile, settings: Settings) -> bytes:
    check_audio_format(upload)
    data = read_upload(upload, settings.stt_max_audio_bytes, "audio_file")
    if not data:
        raise ApiError(
            400, "audio_file is empty (0 bytes)", error_code="INVALID_AUDIO", details={"field": "audio_file"}
        )
    return data


router = APIRouter(
    prefix="/api/v3",
    tags=["speech-to-text"],
    route_class=BoundedBodyRoute,
    responses=v3_errors(*V3_ROUTE_ERRORS),
)
Transcriber = Annotated[Principal, Depends(require(STT))]


def resolve_model(session: Session, principal: Principal, model: str, language: str | None) -> tuple[str, str]:
    """(the deployment's model reference: checkpoint key or base name, the version it names), after the checks.

    ``custom_model_{id}`` names its ``production`` alias when set, else its latest version;
    ``custom_model_{id}@3`` and ``custom_model_{id}@alias`` name a version, which stays
    servable while the model retrains. Resolved per request, so serving follows an alias move
    at the next request. The version is ``custom_model_{id}@N`` (the key itself for a base
    model or one trained before the registry); ``language`` None skips the language check.
    """
    if model in BASE_MODELS:
        return _check_language(model, language, list(LANGUAGES)), model
    key, pinned, _ = model.partition("@")
    row = _custom_model(session, principal, key)
    if pinned:
        try:
            version = registry.resolve(session, principal.organization_id, model, "stt")
        except registry.RegistryError as e:
            raise ApiError(404, f"Model {model!r} not found: {e}", error_code="MODEL_NOT_FOUND", details={"model": model}) from None
        if version is None or version.archived_at is not None or not version.checkpoint_key:
            raise ApiError(404, f"Model {model!r} not found", error_code="MODEL_NOT_FOUND", details={"model": model})
        return _check_language(version.checkpoint_key, language, [row.language], model), registry.version_label(session, version)
    if row.training_status != TrainingStatus.SUCCESS or not row.checkpoint_key:
        raise ApiError(
            409,
            f"Model {model} is not ready for transcription (training status {row.training_status})",
            error_code="MODEL_NOT_READY",
            details={"current_status": row.training_status, "required_status": int(TrainingStatus.SUCCESS)},
        )
    version = registry.resolve(session, principal.organization_id, model, "stt", bare=registry.PRODUCTION)
    # A model trained before the registry existed has no version yet: its own checkpoint serves.
    if version is None:
        return _check_language(row.checkpoint_key, language, [row.language], model), key
    return _check_language(version.checkpoint_key, language, [row.language], model), registry.version_label(session, version)


def _custom_model(session: Session, principal: Principal, key: str) -> CustomModel:
    """The organization's custom model of a ``custom_model_{id}`` key (404 otherwise)."""
    digits = key.removeprefix(MODEL_KEY_PREFIX)
    if not key.startswith(MODEL_KEY_PREFIX) or not digits.isdigit() or len(digits) > 18:
        raise ApiError(
            404,
            f"Model {key!r} not found; use a base model ({', '.join(BASE_MODELS)}) or a key custom_model_{{id}}",
            error_code="MODEL_NOT_FOUND",
            details={"model": key, "base_models": list(BASE_MODELS)},
        )
    row = session.scalar(
        select(CustomModel).where(CustomModel.id == int(digits), CustomModel.organization_id == principal.organization_id)
    )
    if row is None:
        raise ApiError(404, f"Custom model {key} not found", error_code="MODEL_NOT_FOUND", details={"model": key})
    return row


def _check_language(ref: str, language: str | None, supported: list[str], model: str | None = None) -> str:
    if language is not None and language not in supported:
        raise ApiError(
            400,
            f"Language {language!r} is not supported by model {model or ref}; supported: {supported}",
            error_code="UNSUPPORTED_LANGUAGE",
            details={"language": language, "supported": supported},
        )
    return ref


def parse_boost_terms(text: str | None) -> list[str]:
    terms = [t.strip() for t in (text or "").split(",") if t.strip()]
    if len(terms) > MAX_BOOST_TERMS or any(len(t) > MAX_BOOST_TERM_CHARS for t in terms):
        raise ApiError(
            422,
            f"boost_terms takes at most {MAX_BOOST_TERMS} comma-separated terms of up to {MAX_BOOST_TERM_CHARS} characters",
            error_code="VALIDATION_ERROR",
            details={"terms": len(terms)},
        )
    return terms


@router.post(
    "/stt",
    response_model=Transcription,
    dependencies=[rate_limited("transcription")],
    responses=v3_errors(404, 409),
    openapi_extra=multipart_encoding(audio_file=AUDIO_PART_TYPES),
)
async def transcribe(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Transcriber,
    model: Annotated[
        Text, Form(max_length=200, description="A base model (general, medical, legal, technical), custom_model_{id} (its production alias, else its latest version), custom_model_{id}@3 or custom_model_{id}@alias.")
    ],
    language: Annotated[Text, Form(max_length=16, description="Language key, e.g. en.")],
    audio_file: Annotated[UploadFile, File(description="mp3, wav, flac, m4a, aac or ogg")],
    boost_terms: Annotated[Text | None, Form(max_length=20_000, description="Comma-separated terms to favour.")] = None,
) -> Transcription:
    """Transcribe one file: text, word timings (seconds) and confidences."""
    ref, _ = await run_in_threadpool(resolve_model, session, principal, model, language)
    await run_in_threadpool(session.commit)  # hand the connection back to the pool while the transcriber works
    terms = parse_boost_terms(boost_terms)
    data = await run_in_threadpool(audio_upload_bytes, audio_file, settings)
    transcriber = getattr(request.app.state, "transcriber", None)
    if transcriber is None:
        raise ApiError(503, "Transcription is not deployed on this cluster", headers={"Retry-After": "30"})
    try:
        result = await transcriber.options(multiplexed_model_id=ref).transcribe.remote(data, boost_terms=terms)
    except Exception as e:
        cause = e.cause if isinstance(e, RayTaskError) and getattr(e, "cause", None) is not None else e
        if isinstance(cause, AudioDecodeError):
            raise ApiError(
                400, f"audio_file: {cause}", error_code="INVALID_AUDIO", details={"field": "audio_file"}
            ) from e
        if isinstance(cause, (RayActorError, BackPressureError)):
            log.warning("transcriber unavailable for %s: %s", model, type(cause).__name__)
            raise ApiError(503, "Transcription is busy or restarting, retry later", headers={"Retry-After": "2"}) from e
        raise
    return Transcription(
        text=result["text"], words=result["words"], duration=result["duration"], model=model, language=language
    )
