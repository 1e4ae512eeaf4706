"""v1 inference jobs (detection-inference.md): jobs, file uploads, results, downloads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select

from cluster.accounts import Principal
from cluster.blob_keys import inference_audio_key
from cluster.registry import RegistryError, resolve_detector
from cluster.inference import cancel_job, file_refusal, job_counts, model_refusal, queue_file
from cluster.pending_uploads import expire_inference_uploads, expired_message, upload_cutoff
from cluster import review_export, reviews
from cluster.review_tables import DetectionReview
from cluster.tables import DetectorModel, InferenceFile, InferenceJob, new_id
from cluster.uploads import UploadError, display_filename, finish_upload, start_upload
from schemas.auth import DETECTION_READ, DETECTION_WRITE
from schemas.common import Id, Page, Text
from schemas.datasets import MAX_SPAN_MS, AnnotationCreate
from schemas.inference import (
    DetectionWindow,
    DownloadUrl,
    FileConfirm,
    FileUploadRequest,
    FileUploadUrl,
    InferenceFilePublic,
    InferenceJobCreate,
    InferenceJobDetail,
    InferenceJobPublic,
    InferenceJobStatus,
    Peaks,
    Spectrogram,
)
from schemas.reviews import ReviewCreate, ReviewList, ReviewPublic, SendToDataset, SentToDataset
from serve_app import audio_views
from serve_app.audio_views import PeaksQuery, SpectrogramQuery
from serve_app.deps import BlobsDep, PageDep, SessionDep, SettingsDep, WakeDispatcherDep, fetch_window, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors
from serve_app.routes.annotations import InvalidAnnotation, add_draft_set, check_annotation, get_draft
from serve_app.routes.datasets import get_dataset, type_names
from serve_app.routes.models import owned_model

router = APIRouter(prefix="/api/v1/inference-jobs", tags=["inference-jobs"], responses=v1_errors(*V1_ROUTE_ERRORS))
Reader = Annotated[Principal, Depends(require(DETECTION_READ))]
Writer = Annotated[Principal, Depends(require(DETECTION_WRITE))]


def _job(session, principal: Principal, job_id: str) -> InferenceJob:
    job = session.get(InferenceJob, job_id)
    if job is None or job.organization_id != principal.organization_id:
        raise ApiError(404, "Inference job not found")
    return job


def _file(session, job: InferenceJob, file_id: str) -> InferenceFile:
    row = session.get(InferenceFile, file_id)
    if row is None or row.inference_job_id != job.id:
        raise ApiError(404, "File not found")
    return row


def file_public(row: InferenceFile) -> InferenceFilePublic:
    return InferenceFilePublic(
        id=row.id,
        inference_job_id=row.inference_job_id,
        original_filename=row.original_filename,
        s3_key=row.blob_key,
        duration_ms=row.duration_ms,
        status=row.status,
        error_message=row.error_message,
        detections=row.detections or [],
        detection_count=row.detection_count,
        processed_at=row.processed_at,
    )


def job_public(session, jobs: list[InferenceJob], *, with_files: bool = False) -> list[InferenceJobPublic]:
    counts = job_counts(session, [j.id for j in jobs])
    out = []
    for job in jobs:
        c = counts[job.id]
        fields = dict(
            id=job.id,
            model_id=job.model_id,
            model_reference=job.model_reference,
            model_version=job.model_version,
            config=job.config,
            status=c.status,
            total_files=c.total_files,
            processed_files=c.processed_files,
            failed_files=c.failed_files,
            total_detections=c.total_detections,
            error_message=c.error_message,
            created_at=job.created_at,
            started_at=c.started_at,
            completed_at=c.completed_at,
        )
        if with_files:
            files = session.scalars(
                select(InferenceFile).where(InferenceFile.inference_job_id == job.id).order_by(InferenceFile.created_at)
            ).all()
            out.append(InferenceJobDetail(**fields, files=[file_public(f) for f in files]))
        else:
            out.append(InferenceJobPublic(**fields))
    return out


@router.post("", status_code=201, response_model=InferenceJobPublic, responses=v1_errors(404, 409))
def create_inference_job(body: InferenceJobCreate, session: SessionDep, principal: Writer) -> InferenceJobPublic:
    """Create an inference job for one active model: its UUID, or a registry version or alias, resolved now."""
    try:
        model_id, version = resolve_detector(session, principal.organization_id, body.model_id)
    except RegistryError:
        raise ApiError(404, "Model not found") from None
    refusal = model_refusal(owned_model(session, principal, model_id))
    if refusal:
        raise ApiError(409, refusal)
    job = InferenceJob(
        organization_id=principal.organization_id,
        model_id=model_id,
        model_reference=body.model_id if body.model_id != model_id else None,
        model_version=version,
        config=body.config.model_dump(),
    )
    session.add(job)
    session.commit()
    return job_public(session, [job])[0]


@router.get("", response_model=Page[InferenceJobPublic])
def list_inference_jobs(
    session: SessionDep,
    principal: Reader,
    page: PageDep,
    model_id: Annotated[Id | None, Query()] = None,
    status: Annotated[InferenceJobStatus | None, Query()] = None,
) -> dict:
    """Inference jobs of the organization, newest first."""
    q = select(InferenceJob).where(InferenceJob.organization_id == principal.organization_id)
    if model_id:
        q = q.where(InferenceJob.model_id == model_id)
    if status:
        q = q.where(InferenceJob.status == status)
    result = page.fetch(session, q, InferenceJob.created_at.desc(), InferenceJob.id)
    result["items"] = job_public(session, result["items"])
    return result


@router.get("/{job_id}", response_model=InferenceJobDetail, responses=v1_errors(404))
def get_inference_job(job_id: Id, session: SessionDep, principal: Reader) -> InferenceJobPublic:
    """One job with counts and every file's detections."""
    return job_public(session, [_job(session, principal, job_id)], with_files=True)[0]


@router.delete("/{job_id}", response_model=InferenceJobPublic, responses=v1_errors(404, 409))
def cancel_inference_job(job_id: Id, session: SessionDep, principal: Writer) -> InferenceJobPublic:
    """Cancel a pending or processing job; finished files keep their results."""
    job = _job(session, principal, job_id)
    if not cancel_job(session, job.id):
        raise ApiError(409, f"Inference job is already {job.status}")
    session.commit()
    session.refresh(job)
    return job_public(session, [job])[0]


@router.post(
    "/{job_id}/files/upload-url", status_code=201, response_model=FileUploadUrl, responses=v1_errors(404, 409)
)
def file_upload_url(
    job_id: Id, body: FileUploadRequest, session: SessionDep, settings: SettingsDep, blobs: BlobsDep, principal: Writer
) -> FileUploadUrl:
    """Presigned POST for one audio file of this job."""
    job = _job(session, principal, job_id)
    _refuse_new_files(session, job)
    file_id = new_id()
    key = inference_audio_key(job.id, file_id)
    try:
        name = display_filename(body.filename)
        post = start_upload(
            blobs, settings, key=key, declared_size=body.file_size_bytes, content_type=body.content_type, filename=name
        )
    except UploadError as e:
        raise ApiError(e.status_code, str(e)) from e
    session.add(
        InferenceFile(
            id=file_id,
            organization_id=principal.organization_id,
            inference_job_id=job.id,
            original_filename=name,
            content_type=body.content_type,
            declared_size=body.file_size_bytes,
            blob_key=key,
        )
    )
    session.commit()
    return FileUploadUrl(
        file_id=file_id, upload_url=post.url, upload_fields=post.fields, s3_key=key, expires_in=settings.upload_url_expiry_s
    )


@router.post("/{job_id}/files/confirm", response_model=InferenceFilePublic, responses=v1_errors(404, 409))
def confirm_file(
    job_id: Id, body: FileConfirm, session: SessionDep, settings: SettingsDep, blobs: BlobsDep, principal: Writer,
    wake_dispatcher: WakeDispatcherDep,
) -> InferenceFilePublic:
    """Confirm an uploaded file: it is queued durably for inference."""
    job = _job(session, principal, job_id)
    row = session.get(InferenceFile, body.file_id)
    if row is None or row.inference_job_id != job.id:
        raise ApiError(404, "File not found (uploads not confirmed before their upload URL expired are removed)")
    if row.status == "pending" or row.queued_at is None:  # not confirmed yet, or failed with its job since
        _refuse_new_files(session, job)
    if row.status != "pending":
        return file_public(row)  # confirming twice is harmless
    cutoff = upload_cutoff(settings)
    if row.created_at < cutoff:  # the periodic sweep has not reached it yet: expire it now
        keys = expire_inference_uploads(session, cutoff, [row.id])
        session.commit()
        for key in keys:
            blobs.delete(key)
        raise ApiError(409, expired_message(settings))
    try:
        finish_upload(blobs, key=row.blob_key, declared_size=row.declared_size)
    except UploadError as e:
        raise ApiError(e.status_code, str(e)) from e
    if not queue_file(session, job.id, row.id):  # the job ended, the upload expired or another confirm won
        session.rollback()
        _refuse_new_files(session, _job(session, principal, job_id))
        row = session.get(InferenceFile, body.file_id, populate_existing=True)
        if row is None:
            raise ApiError(409, expired_message(settings))
        return file_public(row)
    session.commit()
    wake_dispatcher("inference")
    # Answer what this request did, whatever the dispatcher has done since.
    return file_public(row).model_copy(update={"status": "queued"})


def _refuse_new_files(session, job: InferenceJob) -> None:
    """409 when the job takes no new files; a model found unusable fails the job first (committed)."""
    refusal = file_refusal(session, job)
    if refusal:
        session.commit()
        raise ApiError(409, refusal)


@router.get("/{job_id}/files/{file_id}", response_model=InferenceFilePublic, responses=v1_errors(404))
def get_file(job_id: Id, file_id: Id, session: SessionDep, principal: Reader) -> InferenceFilePublic:
    """One file's status and detections."""
    return file_public(_file(session, _job(session, principal, job_id), file_id))


@router.get("/{job_id}/files/{file_id}/download-url", response_model=DownloadUrl, responses=v1_errors(404, 409))
def file_download_url(
    job_id: Id, file_id: Id, session: SessionDep, settings: SettingsDep, blobs: BlobsDep, principal: Reader
) -> DownloadUrl:
    """Short-lived URL of the original audio."""
    row = _file(session, _job(session, principal, job_id), file_id)
    if row.status == "pending":
        raise ApiError(409, "File upload was not confirmed")
    url = blobs.presigned_get(row.blob_key, expires_s=settings.download_url_expiry_s, filename=row.original_filename)
    return DownloadUrl(url=url, expires_in=settings.download_url_expiry_s, filename=row.original_filename)


@router.get("/{job_id}/files/{file_id}/peaks", response_model=Peaks, responses=v1_errors(400, 404, 409))
def file_peaks(job_id: Id, file_id: Id, session: SessionDep, blobs: BlobsDep, principal: Reader, window: PeaksQuery) -> Peaks:
    """Waveform peaks computed when the file was processed, at the requested zoom, over a time window."""
    row = _file(session, _job(session, principal, job_id), file_id)
    return audio_views.peaks_answer(blobs, row.blob_key, row.duration_ms, row.status == "completed", row.status, window)


@router.get("/{job_id}/files/{file_id}/spectrogram", response_model=Spectrogram, responses=v1_errors(400, 404, 409))
def file_spectrogram(
    job_id: Id, file_id: Id, session: SessionDep, blobs: BlobsDep, principal: Reader, window: SpectrogramQuery
) -> Spectrogram:
    """The detector's log-mel bands of a processed file over a time window (the page's spectrogram view)."""
    row = _file(session, _job(session, principal, job_id), file_id)
    return audio_views.spectrogram_answer(blobs, row.blob_key, row.duration_ms, row.status == "completed", row.status, window)


@router.get("/{job_id}/files/{file_id}/detections", response_model=DetectionWindow, responses=v1_errors(404))
def file_detections(
    job_id: Id,
    file_id: Id,
    session: SessionDep,
    principal: Reader,
    start_ms: Annotated[int, Query(ge=0, le=MAX_SPAN_MS)] = 0,
    end_ms: Annotated[int, Query(gt=0, le=MAX_SPAN_MS)] = MAX_SPAN_MS,
    types: Annotated[Text | None, Query(max_length=2000, description="Only these artifact types, comma-separated.")] = None,
    min_confidence: Annotated[float, Query(ge=0, le=1)] = 0.0,
) -> DetectionWindow:
    """The detections overlapping a time window: a file with thousands of them is read a view at a time."""
    row = _file(session, _job(session, principal, job_id), file_id)
    wanted = {t.strip() for t in types.split(",") if t.strip()} if types else None
    items = sorted(
        (d for d in row.detections or []
         if d["end_ms"] > start_ms and d["start_ms"] < end_ms and d["confidence"] >= min_confidence
         and (wanted is None or d["artifact_type"] in wanted)),
        key=lambda d: (d["start_ms"], d["end_ms"]),
    )
    return DetectionWindow(start_ms=start_ms, end_ms=end_ms, total=len(items), items=items)


# --- reviews ------------------------------------------------------------------------------------------

REVIEWS = "/{job_id}/files/{file_id}/reviews"


@router.post(REVIEWS, status_code=201, response_model=ReviewPublic, responses=v1_errors(400, 404, 409))
def review_detection(job_id: Id, file_id: Id, body: ReviewCreate, session: SessionDep, principal: Writer) -> DetectionReview:
    """Accept, reject or correct one detection; a new review of the same detection replaces the old."""
    job = _job(session, principal, job_id)
    row = _file(session, job, file_id)
    if row.status != "completed":
        raise ApiError(409, f"Only a processed file's detections can be reviewed; this file is {row.status}")
    model = session.get(DetectorModel, job.model_id)
    try:
        values = reviews.review_values(row, list(model.artifact_types), body.detection_id, body.action, body.artifact_type,
                                       body.start_ms, body.end_ms)
        review = reviews.record(session, row, body.detection_id, body.action, values, body.note, principal.key_id)
    except reviews.ReviewError as e:
        raise ApiError(e.status_code, e.message, details={"detection_id": body.detection_id}) from None
    session.commit()
    return review


@router.get(REVIEWS, response_model=ReviewList, responses=v1_errors(404))
def list_reviews(job_id: Id, file_id: Id, session: SessionDep, principal: Reader, page: PageDep) -> ReviewList:
    """The file's reviews, oldest first, with how many of its detections are reviewed."""
    row = _file(session, _job(session, principal, job_id), file_id)
    query = select(DetectionReview).where(DetectionReview.inference_file_id == row.id)
    items, total = fetch_window(session, query, (DetectionReview.reviewed_at, DetectionReview.id), page.offset, page.page_size)
    return ReviewList(items=items, total=total, page=page.page, page_size=page.page_size,
                      detections=len(row.detections or []), reviewed=total)


@router.delete(REVIEWS + "/{review_id}", status_code=204, responses=v1_errors(404))
def undo_review(job_id: Id, file_id: Id, review_id: Id, session: SessionDep, principal: Writer) -> Response:
    """Undo a review: the detection is unreviewed again."""
    row = _file(session, _job(session, principal, job_id), file_id)
    review = session.get(DetectionReview, review_id)
    if review is None or review.inference_file_id != row.id:
        raise ApiError(404, "Review not found")
    session.delete(review)
    session.commit()
    return Response(status_code=204)


@router.post("/{job_id}/files/{file_id}/send-to-dataset", status_code=201, response_model=SentToDataset,
             responses=v1_errors(400, 404, 409))
def send_to_dataset(
    job_id: Id, file_id: Id, body: SendToDataset, session: SessionDep, blobs: BlobsDep, principal: Writer
) -> SentToDataset:
    """The reviewed file becomes dataset audio; its accepted and corrected detections, annotations of a draft set."""
    row = _file(session, _job(session, principal, job_id), file_id)
    dataset = get_dataset(session, principal, body.dataset_id)
    if row.status != "completed":
        raise ApiError(409, f"Only a processed file can be sent to a dataset; this file is {row.status}")
    file_reviews = list(session.scalars(select(DetectionReview).where(DetectionReview.inference_file_id == row.id)))
    if not file_reviews:
        raise ApiError(400, "Review at least one detection before sending the file to a dataset")
    positives, negatives = review_export.reviewed_spans(row, file_reviews)
    unknown = sorted({p["artifact_type"] for p in positives} - set(type_names(dataset)))
    if unknown:
        raise ApiError(400, f"The dataset has no artifact type {', '.join(map(repr, unknown))}; add it to the dataset first",
                       details={"artifact_types": unknown})
    for p in positives:
        try:
            check_annotation(AnnotationCreate(audio_file_id=row.id, artifact_type=p["artifact_type"],
                                              start_ms=p["start_ms"], end_ms=p["end_ms"]),
                             type_names(dataset), {row.id: row.duration_ms})
        except InvalidAnnotation as e:
            raise ApiError(400, f"detection {p['detection_id']}: {e}") from e
    if body.annotation_set_id:
        _, aset = get_draft(session, principal, dataset.id, body.annotation_set_id)
        earlier = review_export.already_sent(session, aset, row)
        if earlier:
            raise ApiError(409, "This file was already sent to this annotation set",
                           details={"audio_id": earlier, "annotation_set_id": aset.id})
    else:
        aset = add_draft_set(session, principal, dataset.id)
    audio, annotations = review_export.send(session, blobs, file=row, aset=aset, positives=positives, negatives=negatives)
    session.commit()
    return SentToDataset(dataset_id=dataset.id, audio_id=audio.id, annotation_set_id=aset.id,
                         annotation_set_version=aset.version, annotations_created=len(annotations),
                         reviewed_negatives=len(negatives))
