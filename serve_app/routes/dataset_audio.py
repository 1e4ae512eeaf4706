"""v1 dataset audio: presigned upload, confirm (queues preprocessing), list, get, delete."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cluster.accounts import Principal
from cluster.blob_keys import dataset_audio_key, view_keys
from cluster.pending_uploads import UPLOAD_NEVER_COMPLETED, expire_dataset_uploads, expired_message, upload_cutoff
from cluster.tables import Annotation, AnnotationSet, AudioFile, new_id
from cluster.uploads import UploadError, display_filename, finish_upload, start_upload
from schemas.auth import DETECTION_READ, DETECTION_WRITE
from schemas.common import Id, Page
from schemas.datasets import (
    AudioConfirm,
    AudioConfirmed,
    AudioFilePublic,
    AudioUploadRequest,
    AudioUploadUrl,
    ProcessingStatus,
)
from schemas.inference import DownloadUrl, Peaks, Spectrogram
from serve_app import audio_views
from serve_app.audio_views import PeaksQuery, SpectrogramQuery
from serve_app.deps import BlobsDep, PageDep, SessionDep, SettingsDep, WakeDispatcherDep, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors
from serve_app.routes.datasets import get_dataset

log = logging.getLogger("fathom.dataset_audio")

router = APIRouter(
    prefix="/api/v1/datasets/{dataset_id}/audio", tags=["dataset audio"], responses=v1_errors(*V1_ROUTE_ERRORS, 404)
)
Reader = Annotated[Principal, Depends(require(DETECTION_READ))]
Writer = Annotated[Principal, Depends(require(DETECTION_WRITE))]

QUEUED_STATUS = "normalizing"  # the status the preprocessing dispatcher claims confirmed audio from
CONFIRMED_MESSAGE = "Upload confirmed; the file is queued for processing"
CONFIRMED_MESSAGES = {  # answers to a repeated confirm, by the file's current status
    "normalizing": "Already confirmed; the file is queued for processing",
    "embedding": "Already confirmed; features are being computed",
    "ready": "Already confirmed; the file is processed and ready",
    "failed": "Already confirmed; processing failed (see error_message on the file)",
}


def get_audio(session: Session, principal: Principal, dataset_id: str, audio_id: str) -> AudioFile:
    """One audio file of the caller's dataset, or 404 (unknown dataset, file, or organization)."""
    dataset = get_dataset(session, principal, dataset_id)
    row = session.scalar(select(AudioFile).where(AudioFile.id == audio_id, AudioFile.dataset_id == dataset.id))
    if row is None:
        raise ApiError(404, "Audio file not found")
    return row


@router.post("/upload-url", status_code=201, response_model=AudioUploadUrl)
def create_upload_url(
    dataset_id: Id,
    body: AudioUploadRequest,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    principal: Writer,
) -> AudioUploadUrl:
    """Register an audio file (status pending) and get a form to POST it to storage."""
    dataset = get_dataset(session, principal, dataset_id)
    audio_id = new_id()
    key = dataset_audio_key(dataset.id, audio_id)
    try:
        name = display_filename(body.filename)
        post = start_upload(
            blobs, settings, key=key, declared_size=body.file_size, content_type=body.content_type, filename=name
        )
    except UploadError as e:
        raise ApiError(e.status_code, e.message) from e
    session.add(
        AudioFile(
            id=audio_id,
            organization_id=principal.organization_id,
            dataset_id=dataset.id,
            original_filename=name,
            content_type=body.content_type,
            declared_size=body.file_size,
            blob_key=key,
            processing_status="pending",
        )
    )
    session.commit()
    return AudioUploadUrl(
        audio_id=audio_id, upload_url=post.url, fields=post.fields, key=key, expires_in=settings.upload_url_expiry_s
    )


@router.post("/confirm", response_model=AudioConfirmed, responses=v1_errors(409))
def confirm_upload(
    dataset_id: Id, body: AudioConfirm, session: SessionDep, settings: SettingsDep, blobs: BlobsDep, principal: Writer,
    wake_dispatcher: WakeDispatcherDep,
) -> AudioConfirmed:
    """Confirm an uploaded file and queue it for processing; confirming again answers its status."""
    row = get_audio(session, principal, dataset_id, body.audio_id)
    cutoff = upload_cutoff(settings)
    if row.processing_status == "pending" and row.created_at < cutoff:  # the sweep has not reached it yet
        keys = expire_dataset_uploads(session, cutoff, [row.id])
        session.commit()
        for key in keys:
            blobs.delete(key)
        session.refresh(row)
    if row.processing_status == "pending":
        try:
            finish_upload(blobs, key=row.blob_key, declared_size=row.declared_size)
        except UploadError as e:
            raise ApiError(e.status_code, e.message) from e
        # Conditional: a concurrent confirm (or the dispatcher after it) is never moved back.
        won = session.execute(
            update(AudioFile)
            .where(AudioFile.id == row.id, AudioFile.processing_status == "pending")
            .values(processing_status=QUEUED_STATUS, error_message=None, attempts=0, lease_until=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if won:  # answer what this request did, whatever the dispatcher does next
            wake_dispatcher("dataset_audio")
            return AudioConfirmed(audio_id=row.id, status=QUEUED_STATUS, message=CONFIRMED_MESSAGE)
        session.refresh(row)
    if row.processing_status == "failed" and row.error_message == UPLOAD_NEVER_COMPLETED:
        raise ApiError(409, expired_message(settings))
    return AudioConfirmed(
        audio_id=row.id, status=row.processing_status, message=CONFIRMED_MESSAGES[row.processing_status]
    )


@router.get("", response_model=Page[AudioFilePublic])
def list_audio(
    dataset_id: Id,
    session: SessionDep,
    principal: Reader,
    page: PageDep,
    processing_status: Annotated[ProcessingStatus | None, Query(description="Only files in this status.")] = None,
) -> dict:
    """The dataset's audio files, newest first."""
    dataset = get_dataset(session, principal, dataset_id)
    where = [AudioFile.dataset_id == dataset.id]
    if processing_status is not None:
        where.append(AudioFile.processing_status == processing_status)
    return page.fetch(session, select(AudioFile).where(*where), AudioFile.created_at.desc(), AudioFile.id)


@router.get("/{audio_id}", response_model=AudioFilePublic)
def get_one(dataset_id: Id, audio_id: Id, session: SessionDep, principal: Reader) -> AudioFile:
    """One audio file with its processing status."""
    return get_audio(session, principal, dataset_id, audio_id)


@router.delete("/{audio_id}", status_code=204, responses=v1_errors(409))
def delete_audio(
    dataset_id: Id, audio_id: Id, session: SessionDep, blobs: BlobsDep, principal: Writer
) -> Response:
    """Delete an audio file, its draft annotations and stored objects (409 if a published set annotates it)."""
    row = get_audio(session, principal, dataset_id, audio_id)
    published = session.scalar(
        select(AnnotationSet.version)
        .join(Annotation, Annotation.annotation_set_id == AnnotationSet.id)
        .where(Annotation.audio_file_id == row.id, AnnotationSet.status == "published")
        .order_by(AnnotationSet.version)
        .limit(1)
    )
    if published is not None:
        raise ApiError(
            409, f"Audio file is annotated in published annotation set version {published}; "
            "published sets are immutable, so the file cannot be deleted",
        )
    keys = [k for k in (row.blob_key, row.features_key) if k] + view_keys(row.blob_key)
    session.delete(row)  # its draft annotations go by ON DELETE CASCADE
    session.commit()
    for key in keys:
        blobs.delete(key)
    return Response(status_code=204)


# --- what the annotation editor draws -------------------------------------------------------------


@router.get("/{audio_id}/download-url", response_model=DownloadUrl, responses=v1_errors(409))
def audio_download_url(
    dataset_id: Id, audio_id: Id, session: SessionDep, settings: SettingsDep, blobs: BlobsDep, principal: Reader
) -> DownloadUrl:
    """Short-lived URL of the uploaded audio (answers Range requests: an <audio> element seeks in it)."""
    row = get_audio(session, principal, dataset_id, audio_id)
    if row.processing_status == "pending":
        raise ApiError(409, "Upload was not confirmed")
    url = blobs.presigned_get(row.blob_key, expires_s=settings.download_url_expiry_s, filename=row.original_filename)
    return DownloadUrl(url=url, expires_in=settings.download_url_expiry_s, filename=row.original_filename)


@router.get("/{audio_id}/peaks", response_model=Peaks, responses=v1_errors(400, 409))
def audio_peaks(dataset_id: Id, audio_id: Id, session: SessionDep, blobs: BlobsDep, principal: Reader, window: PeaksQuery) -> Peaks:
    """Waveform peaks computed by the preprocessing run, at the requested zoom, over a time window."""
    row = get_audio(session, principal, dataset_id, audio_id)
    return audio_views.peaks_answer(blobs, row.blob_key, row.duration_ms, row.processing_status == "ready", row.processing_status, window)


@router.get("/{audio_id}/spectrogram", response_model=Spectrogram, responses=v1_errors(400, 409))
def audio_spectrogram(
    dataset_id: Id, audio_id: Id, session: SessionDep, blobs: BlobsDep, principal: Reader, window: SpectrogramQuery
) -> Spectrogram:
    """The log-mel bands the detector trains on, over a time window."""
    row = get_audio(session, principal, dataset_id, audio_id)
    return audio_views.spectrogram_answer(blobs, row.blob_key, row.duration_ms, row.processing_status == "ready", row.processing_status, window)
