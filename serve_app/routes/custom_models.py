"""v3 custom speech-to-text models: CRUD, training data pairs, training start and log.

Everything answers in the v3 shape; another organization's ids answer 404 MODEL_NOT_FOUND.
Status transitions live in ``cluster.custom_models`` (shared with the training job).
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, File, Form, Query, UploadFile
from sqlalchemy import asc, delete, desc, or_, select, update
from sqlalchemy.orm import Session

from cluster.accounts import Principal
from cluster.blob_keys import custom_model_prefix
from cluster.custom_models import (
    InsufficientData,
    ModelLimitExceeded,
    ModelNotReady,
    TrainingInProgress,
    add_pair,
    remove_pair,
    start_training,
)
from cluster.launcher import LaunchError
from cluster.stt_tables import CustomModel, TrainingDataPair, TrainingLogEntry
from cluster.tables import Organization, utcnow
from data_pipelines.audio import AudioDecodeError, decode_audio
from data_pipelines.text import TranscriptError, decode_transcript, normalize_transcript
from schemas.auth import CUSTOM_MODELS_READ, CUSTOM_MODELS_WRITE
from schemas.common import Text
from schemas.stt import (
    LANGUAGE_IDS,
    STATUS_MESSAGES,
    BaseModelName,
    CustomModelCreate,
    CustomModelList,
    CustomModelPublic,
    CustomModelUpdate,
    DataAudioUrl,
    DataDeleted,
    DataPairList,
    DataType,
    DataUploaded,
    Deleted,
    RunTraining,
    SortField,
    TrainingLogPage,
    TrainingStatus,
)
from serve_app.deps import BlobsDep, SessionDep, SettingsDep, Window, require, window_params
from serve_app.errors import V3_ROUTE_ERRORS, ApiError, v3_errors
from serve_app.rate_limits import rate_limited
from serve_app.routes.stt import (
    AUDIO_PART_TYPES,
    BoundedBodyRoute,
    audio_upload_bytes,
    multipart_encoding,
    read_upload,
    upload_filename,
)

log = logging.getLogger("fathom.custom_models")

TRANSCRIPT_EXTENSIONS = (".txt", "")  # a transcript may also come without an extension
MAX_ID = 2**63 - 1  # ids are SQL BIGINTs: a larger number names nothing (and cannot be bound)
MAX_TRANSCRIPT_CHARS_PER_SECOND = 40  # normalised characters per second of audio: twice fast speech
TRANSCRIPT_SLACK_CHARS = 50  # on top, so that a short clip may hold a short sentence

router = APIRouter(
    prefix="/api/v3",
    tags=["custom models"],
    route_class=BoundedBodyRoute,
    responses=v3_errors(*V3_ROUTE_ERRORS),
)
Reader = Annotated[Principal, Depends(require(CUSTOM_MODELS_READ))]
Writer = Annotated[Principal, Depends(require(CUSTOM_MODELS_WRITE))]
MODEL = "/custom_models/{model_id}"
# Status-specific fields of a model are left unset outside their status, so they are absent from answers.
MODEL_ANSWER: dict[str, Any] = {"response_model": CustomModelPublic, "response_model_exclude_unset": True}
LIST_ANSWER: dict[str, Any] = {"response_model": CustomModelList, "response_model_exclude_unset": True}
SORT_COLUMNS = {
    "id": CustomModel.id,
    "name": CustomModel.name,
    "created_at": CustomModel.created_at,
    "updated_at": CustomModel.updated_at,
    "last_modified": CustomModel.updated_at,
    "training_status": CustomModel.training_status,
    "base_model": CustomModel.base_model,
}


# --- helpers ------------------------------------------------------------------------------------


ModelsWindow = Annotated[Window, window_params(25, 100)]
EntriesWindow = Annotated[Window, window_params(100, 1000)]  # data pairs and log entries


def model_not_found(model_id: int | str) -> ApiError:
    return ApiError(
        404, f"Custom model {model_id} not found", error_code="MODEL_NOT_FOUND", details={"model_id": model_id}
    )


def owned_model(session: Session, principal: Principal, model_id: int, *, lock: bool = False) -> CustomModel:
    """The caller's model, or 404: another organization's ids look exactly like unknown ones."""
    if not -MAX_ID <= model_id <= MAX_ID:
        raise model_not_found(model_id)
    stmt = (
        select(CustomModel)
        .where(CustomModel.id == model_id, CustomModel.organization_id == principal.organization_id)
        .execution_options(populate_existing=True)
    )
    model = session.scalar(stmt.with_for_update() if lock else stmt)
    if model is None:
        raise model_not_found(model_id)
    return model


def org_number(session: Session, principal: Principal) -> int:
    return session.scalar(select(Organization.number).where(Organization.id == principal.organization_id))


def in_progress(model: CustomModel | TrainingInProgress, what: str) -> ApiError:
    return ApiError(
        409,
        f"Training already in progress; {what}",
        error_code="TRAINING_IN_PROGRESS",
        details={"training_progress": model.training_progress},
    )


def public(model: CustomModel, organization_number: int) -> CustomModelPublic:
    return CustomModelPublic.from_record(model, organization_number)


# --- models -----------------------------------------------------------------------------------


@router.post(
    "/custom_models",
    status_code=201,
    **MODEL_ANSWER,
    dependencies=[rate_limited("model_creation")],
    responses=v3_errors(404),
)
def create_model(body: CustomModelCreate, session: SessionDep, principal: Writer) -> CustomModelPublic:
    """Create a custom model (status 1). Accepts ``{name, language_id, organization_id?}`` or
    ``{name, language, base_model?, description?}``."""
    number = org_number(session, principal)
    if body.organization_id is not None and body.organization_id != number:
        raise ApiError(
            404,
            f"Organization {body.organization_id} not found",
            error_code="ORGANIZATION_NOT_FOUND",
            details={"organization_id": body.organization_id},
        )
    model = CustomModel(
        organization_id=principal.organization_id,
        name=body.name,
        description=body.description,
        language=body.language_key,
        base_model=body.base_model,
        training_status=int(TrainingStatus.NOT_RUNNING),
        status_message=STATUS_MESSAGES[TrainingStatus.NOT_RUNNING],
    )
    session.add(model)
    session.commit()
    return public(model, number)


_LIST_DOC = (
    "The organization's models: search ``q`` (name or description), filters, sort, offset/limit or page/per_page."
)


@router.get("/custom_models", **LIST_ANSWER, dependencies=[rate_limited("status_checks")], description=_LIST_DOC)
@router.get(
    "/speech-to-text/models", **LIST_ANSWER, dependencies=[rate_limited("status_checks")], description=_LIST_DOC
)
def list_models(
    session: SessionDep,
    principal: Reader,
    window: ModelsWindow,
    q: Annotated[
        Text | None, Query(max_length=200, description="Case-insensitive substring of name or description.")
    ] = None,
    sort: SortField = "created_at",
    direction: Literal["asc", "desc"] = "desc",
    training_status: Annotated[int | None, Query(ge=1, le=5)] = None,
    base_model: Annotated[BaseModelName | None, Query()] = None,
) -> CustomModelList:
    where = [CustomModel.organization_id == principal.organization_id]
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(
            or_(
                CustomModel.name.ilike(f"%{escaped}%", escape="\\"),
                CustomModel.description.ilike(f"%{escaped}%", escape="\\"),
            )
        )
    if training_status is not None:
        where.append(CustomModel.training_status == training_status)
    if base_model is not None:
        where.append(CustomModel.base_model == base_model)
    order = asc if direction == "asc" else desc
    rows, total = window.fetch(session, select(CustomModel).where(*where), order(SORT_COLUMNS[sort]), order(CustomModel.id))
    number = org_number(session, principal)
    return CustomModelList(count=len(rows), total_results=total, result=[public(r, number) for r in rows])


@router.get(MODEL, **MODEL_ANSWER, dependencies=[rate_limited("status_checks")], responses=v3_errors(404))
def get_model(model_id: int, session: SessionDep, principal: Reader) -> CustomModelPublic:
    """One model with its training status and progress (poll this while training)."""
    return public(owned_model(session, principal, model_id), org_number(session, principal))


@router.put(MODEL, **MODEL_ANSWER, dependencies=[rate_limited("model_changes")], responses=v3_errors(404, 409))
@router.post(MODEL, **MODEL_ANSWER, dependencies=[rate_limited("model_changes")], responses=v3_errors(404, 409))
def update_model(model_id: int, body: CustomModelUpdate, session: SessionDep, principal: Writer) -> CustomModelPublic:
    """Change name, description, language or base model (fields omitted stay; the last two not while training)."""
    model = owned_model(session, principal, model_id)
    number = org_number(session, principal)
    changes = body.model_dump(exclude_unset=True)
    nulls = [
        k
        for k in ("name", "language", "language_id", "base_model", "organization_id")
        if k in changes and changes[k] is None
    ]
    if nulls:
        raise ApiError(
            422, f"{', '.join(nulls)} cannot be null; omit a field to leave it unchanged", error_code="VALIDATION_ERROR"
        )
    if changes.pop("organization_id", number) != number:
        raise ApiError(404, f"Organization {body.organization_id} not found", error_code="ORGANIZATION_NOT_FOUND")
    if "language_id" in changes:
        changes["language"] = LANGUAGE_IDS[changes.pop("language_id")]
    stmt = update(CustomModel).where(CustomModel.id == model.id)
    if {"language", "base_model"} & set(changes):
        stmt = stmt.where(CustomModel.training_status != int(TrainingStatus.RUNNING))
    if (
        changes
        and not session.execute(
            stmt.values(**changes, updated_at=utcnow()).execution_options(synchronize_session=False)
        ).rowcount
    ):
        session.rollback()
        raise in_progress(owned_model(session, principal, model_id), "language and base_model cannot change now")
    session.commit()
    session.refresh(model)
    return public(model, number)


@router.delete(
    MODEL, response_model=Deleted, dependencies=[rate_limited("model_changes")], responses=v3_errors(404, 409)
)
def delete_model(model_id: int, session: SessionDep, blobs: BlobsDep, principal: Writer) -> Deleted:
    """Delete a model with its training data, log and stored objects (not while training)."""
    model = owned_model(session, principal, model_id)
    checkpoint = model.checkpoint_key
    gone = session.execute(
        delete(CustomModel)
        .where(CustomModel.id == model.id, CustomModel.training_status != int(TrainingStatus.RUNNING))
        .execution_options(synchronize_session=False)
    ).rowcount
    if not gone:
        session.rollback()
        raise in_progress(owned_model(session, principal, model_id), "the model cannot be deleted until it ends")
    session.commit()  # rows first (pairs and log go by ON DELETE CASCADE): a failure below leaves objects, never dangling rows
    removed = blobs.delete_prefix(custom_model_prefix(model_id))
    if checkpoint and not checkpoint.startswith(custom_model_prefix(model_id)):
        blobs.delete(checkpoint)
    log.info("custom model %s deleted with %d stored objects", model_id, removed)
    return Deleted(message=f"Custom model {model_id} deleted", id=model_id)


# --- training data ------------------------------------------------------------------------------


@router.put(
    MODEL + "/data",
    response_model=DataUploaded,
    dependencies=[rate_limited("data_uploads")],
    responses=v3_errors(404, 409),
    openapi_extra=multipart_encoding(audio_file=AUDIO_PART_TYPES, transcript_file="text/plain"),
)
def upload_data(
    model_id: int,
    data_type: Annotated[DataType, Form(alias="type", description="train or test")],
    audio_file: Annotated[UploadFile, File(description="mp3, wav, flac, m4a, aac or ogg")],
    transcript_file: Annotated[UploadFile, File(description="Verbatim transcript, UTF-8 .txt")],
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    principal: Writer,
) -> DataUploaded:
    """Upload one audio file and its transcript; the first train pair makes the model ready (1 -> 2).

    A transcript that the audio could not hold is refused (400 INVALID_TRANSCRIPT): its
    normalised text may have at most 40 characters per second of audio plus 50, about twice
    the rate of fast speech, so only a transcript of other or much longer audio trips it.
    """
    model = owned_model(session, principal, model_id)
    if model.training_status == TrainingStatus.RUNNING:
        raise in_progress(model, "training data cannot change until it ends")
    audio = audio_upload_bytes(audio_file, settings)
    raw_transcript = read_upload(transcript_file, settings.stt_max_transcript_bytes, "transcript_file")
    transcript_name = upload_filename(transcript_file, "transcript_file", "transcript.txt")
    if PurePosixPath(transcript_name).suffix.lower() not in TRANSCRIPT_EXTENSIONS:
        raise ApiError(
            400,
            f"transcript_file {transcript_name!r} must be a plain text .txt file",
            error_code="INVALID_TRANSCRIPT",
            details={"field": "transcript_file"},
        )
    try:
        decoded = decode_audio(audio, max_seconds=settings.max_audio_seconds)
    except AudioDecodeError as e:
        raise ApiError(400, f"audio_file: {e}", error_code="INVALID_AUDIO", details={"field": "audio_file"}) from e
    try:
        original = decode_transcript(raw_transcript)
        normalized = normalize_transcript(original)
    except TranscriptError as e:
        raise ApiError(
            400, f"transcript_file: {e}", error_code="INVALID_TRANSCRIPT", details={"field": "transcript_file"}
        ) from e
    check_transcript_fits(normalized, decoded.duration_ms / 1000.0)

    model = owned_model(session, principal, model_id, lock=True)
    try:
        pair = add_pair(
            session,
            model,
            type=data_type,
            filename=upload_filename(audio_file, "audio_file", "audio"),
            transcript_filename=transcript_name,
            audio_bytes=len(audio),
            transcript=normalized,
            original_transcript=original,
            duration_seconds=decoded.duration_ms / 1000.0,
        )
    except TrainingInProgress as e:
        session.rollback()
        raise in_progress(e, "training data cannot change until it ends") from e
    key = pair.audio_key
    try:
        blobs.put_bytes(key, audio)
        session.commit()
    except BaseException:
        session.rollback()
        blobs.delete(key)
        raise
    return DataUploaded(
        message="Training data uploaded successfully",
        data_type=pair.type,
        filename=pair.filename,
        transcript_filename=pair.transcript_filename,
        training_status=model.training_status,
        id=pair.id,
        duration_seconds=pair.duration_seconds,
    )


def check_transcript_fits(normalized: str, audio_seconds: float) -> None:
    """400 when the transcript has more characters than the audio could hold (see upload_data)."""
    most = int(MAX_TRANSCRIPT_CHARS_PER_SECOND * audio_seconds) + TRANSCRIPT_SLACK_CHARS
    if len(normalized) > most:
        raise ApiError(
            400,
            f"transcript_file: {len(normalized)} characters of speech do not fit {audio_seconds:.2f} s of audio_file "
            f"(at most {most}: {MAX_TRANSCRIPT_CHARS_PER_SECOND} per second plus {TRANSCRIPT_SLACK_CHARS}); "
            "is it the transcript of this audio?",
            error_code="INVALID_TRANSCRIPT",
            details={
                "field": "transcript_file",
                "transcript_characters": len(normalized),
                "max_characters": most,
                "audio_seconds": audio_seconds,
            },
        )


@router.get(
    MODEL + "/data", response_model=DataPairList, dependencies=[rate_limited("status_checks")], responses=v3_errors(404)
)
def list_data(
    model_id: int,
    session: SessionDep,
    principal: Reader,
    window: EntriesWindow,
    type: Annotated[DataType | None, Query(description="Only train or only test pairs.")] = None,
) -> dict:
    """The model's training and test pairs in upload order."""
    model = owned_model(session, principal, model_id)
    where = [TrainingDataPair.model_id == model.id] + ([TrainingDataPair.type == type] if type else [])
    rows, total = window.fetch(session, select(TrainingDataPair).where(*where), TrainingDataPair.id)
    return {"count": len(rows), "total_results": total, "result": rows}  # the response model reads the rows


def owned_pair(session: Session, model: CustomModel, data_id: int) -> TrainingDataPair:
    pair = (
        session.scalar(select(TrainingDataPair).where(TrainingDataPair.id == data_id, TrainingDataPair.model_id == model.id))
        if -MAX_ID <= data_id <= MAX_ID
        else None
    )
    if pair is None:
        raise ApiError(404, f"Training data {data_id} not found", error_code="DATA_NOT_FOUND", details={"data_id": data_id})
    return pair


@router.get(
    MODEL + "/data/{data_id}/audio-url",
    response_model=DataAudioUrl,
    dependencies=[rate_limited("status_checks")],
    responses=v3_errors(404),
)
def data_audio_url(
    model_id: int, data_id: int, session: SessionDep, settings: SettingsDep, blobs: BlobsDep, principal: Reader
) -> DataAudioUrl:
    """Where to fetch one pair's audio (the transcribe page plays and transcribes a test pair from it)."""
    pair = owned_pair(session, owned_model(session, principal, model_id), data_id)
    url = blobs.presigned_get(pair.audio_key, expires_s=settings.download_url_expiry_s, filename=pair.filename)
    return DataAudioUrl(id=pair.id, type=pair.type, filename=pair.filename, url=url, expires_in=settings.download_url_expiry_s,
                        transcript=pair.original_transcript)


@router.delete(
    MODEL + "/data/{data_id}",
    response_model=DataDeleted,
    dependencies=[rate_limited("model_changes")],
    responses=v3_errors(404, 409),
)
def delete_data(model_id: int, data_id: int, session: SessionDep, blobs: BlobsDep, principal: Writer) -> DataDeleted:
    """Delete one pair; removing the last train pair of a ready model sends it back to status 1."""
    model = owned_model(session, principal, model_id, lock=True)
    pair = owned_pair(session, model, data_id)
    key = pair.audio_key
    try:
        remove_pair(session, model, pair)
    except TrainingInProgress as e:
        session.rollback()
        raise in_progress(e, "training data cannot change until it ends") from e
    session.commit()
    blobs.delete(key)
    return DataDeleted(message=f"Training data {data_id} deleted", id=data_id, training_status=model.training_status)


# --- training ------------------------------------------------------------------------------------


@router.post(
    MODEL + "/run", **MODEL_ANSWER, dependencies=[rate_limited("training_starts")], responses=v3_errors(402, 404, 409)
)
def run_training(
    model_id: int,
    session: SessionDep,
    settings: SettingsDep,
    principal: Writer,
    body: Annotated[
        RunTraining | None, Body(description="Empty object {} (may be omitted); optionally this run's augmentation.")
    ] = None,
) -> CustomModelPublic:
    """Start training (status 2, 4 or 5 -> 3): checks the data minimum and the plan's model limit."""
    owned_model(session, principal, model_id)
    augmentation = body.augmentation if body is not None and "augmentation" in body.model_fields_set else None
    try:
        model = start_training(session, settings, model_id, principal.organization_id, augmentation, run_by=principal.key_id)
    except TrainingInProgress as e:
        raise in_progress(e, "wait for it to complete") from e
    except ModelNotReady as e:
        raise ApiError(
            409,
            "Cannot start training: model not ready",
            error_code="MODEL_NOT_READY",
            details={
                "current_status": e.current_status,
                "required_status": int(TrainingStatus.READY),
                "message": "Upload training data before starting training",
            },
        ) from e
    except InsufficientData as e:
        raise ApiError(
            400,
            "Insufficient training data",
            error_code="INSUFFICIENT_DATA",
            details={"current_hours": round(e.current_hours, 6), "required_hours": e.required_hours},
        ) from e
    except ModelLimitExceeded as e:
        raise ApiError(
            402,
            f"Custom model limit reached: {e}",
            error_code="MODEL_LIMIT_EXCEEDED",
            details={"limit": e.limit, "current_models": e.counted},
        ) from e
    except LaunchError as e:
        raise ApiError(
            503,
            f"Training could not be started: {e}",
            error_code="TRAINING_FAILED",
            details={"training_status": int(TrainingStatus.FAILED)},
            headers={"Retry-After": "30"},
        ) from e
    return public(model, org_number(session, principal))


@router.get(
    MODEL + "/log",
    response_model=TrainingLogPage,
    dependencies=[rate_limited("log_retrieval")],
    responses=v3_errors(404),
)
def get_log(model_id: int, session: SessionDep, principal: Reader, window: EntriesWindow) -> dict:
    """Training log entries, oldest first."""
    model = owned_model(session, principal, model_id)
    entries_query = select(TrainingLogEntry).where(TrainingLogEntry.model_id == model.id)
    rows, total = window.fetch(session, entries_query, TrainingLogEntry.id)
    return {"model_id": model.id, "log_entries": rows, "total_entries": total}
