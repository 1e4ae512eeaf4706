"""v1 training jobs: checked, recorded, then run as Ray Jobs (train_jobs.detector)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from cluster.accounts import Principal
from cluster.launcher import LaunchError, stop_job
from cluster.tables import Annotation, AnnotationSet, AudioFile, Dataset, TrainingJob, TrainingJobLogEntry
from cluster.training import end_job, launch_detector_training
from schemas.auth import DETECTION_READ, DETECTION_WRITE
from schemas.common import Id, Page
from schemas.training import TrainingJobCreate, TrainingJobLogs, TrainingJobPublic, TrainingStatus
from serve_app.deps import PageDep, SessionDep, SettingsDep, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors

router = APIRouter(prefix="/api/v1/training-jobs", tags=["training-jobs"], responses=v1_errors(*V1_ROUTE_ERRORS))
Reader = Annotated[Principal, Depends(require(DETECTION_READ))]
Writer = Annotated[Principal, Depends(require(DETECTION_WRITE))]


def _job(session, principal: Principal, job_id: str) -> TrainingJob:
    job = session.get(TrainingJob, job_id)
    if job is None or job.organization_id != principal.organization_id:
        raise ApiError(404, "Training job not found")
    return job


@router.post("", status_code=201, response_model=TrainingJobPublic, responses=v1_errors(404, 409))
def create_training_job(body: TrainingJobCreate, session: SessionDep, settings: SettingsDep, principal: Writer) -> TrainingJob:
    """Check the prerequisites and start training a detector."""
    org = principal.organization_id
    dataset = session.get(Dataset, body.dataset_id)
    if dataset is None or dataset.organization_id != org:
        raise ApiError(404, "Dataset not found")
    aset = session.get(AnnotationSet, body.annotation_set_id)
    if aset is None or aset.organization_id != org or aset.dataset_id != dataset.id:
        raise ApiError(404, "Annotation set not found")
    known = [t["name"] for t in dataset.artifact_types]
    unknown = [t for t in body.config.artifact_types if t not in known]
    if unknown:
        raise ApiError(400, f"artifact_types {unknown} are not types of this dataset; valid types: {known}")
    if aset.status != "published":
        raise ApiError(409, "Annotation set must be published before training")
    statuses = dict(
        session.execute(
            select(AudioFile.processing_status, func.count()).where(AudioFile.dataset_id == dataset.id).group_by(AudioFile.processing_status)
        ).all()
    )
    not_ready = {k: v for k, v in statuses.items() if k != "ready"}
    if not statuses.get("ready"):
        raise ApiError(409, "Dataset has no ready audio files")
    if not_ready:
        raise ApiError(409, f"Every audio file must be ready before training; not ready: {not_ready}")
    total_ms = session.scalar(select(func.coalesce(func.sum(AudioFile.duration_ms), 0)).where(AudioFile.dataset_id == dataset.id))
    if total_ms / 1000 < settings.min_training_audio_s:
        raise ApiError(
            400,
            f"Dataset has {total_ms / 60000:.1f} minutes of audio; training needs at least {settings.min_training_audio_s / 60:.1f}",
        )
    counts = dict(
        session.execute(
            select(Annotation.artifact_type, func.count()).where(Annotation.annotation_set_id == aset.id).group_by(Annotation.artifact_type)
        ).all()
    )
    missing = [t for t in body.config.artifact_types if not counts.get(t)]
    if missing:
        raise ApiError(400, f"Annotation set has no annotations of type(s) {missing}; each requested type needs at least one")
    if statuses["ready"] < 2:
        raise ApiError(400, "Training needs at least 2 audio files (one for validation)")
    job = TrainingJob(
        organization_id=org,
        dataset_id=dataset.id,
        annotation_set_id=aset.id,
        config=body.config.model_dump(),
    )
    session.add(job)
    session.commit()
    try:
        launch_detector_training(session, settings, job)
    except LaunchError as e:
        raise ApiError(503, f"Training could not be started: {e}") from e
    return job


@router.get("", response_model=Page[TrainingJobPublic])
def list_training_jobs(
    session: SessionDep,
    principal: Reader,
    page: PageDep,
    status: Annotated[TrainingStatus | None, Query()] = None,
    dataset_id: Annotated[Id | None, Query()] = None,
) -> dict:
    """Training jobs of the organization, newest first."""
    q = select(TrainingJob).where(TrainingJob.organization_id == principal.organization_id)
    if status:
        q = q.where(TrainingJob.status == status)
    if dataset_id:
        q = q.where(TrainingJob.dataset_id == dataset_id)
    return page.fetch(session, q, TrainingJob.created_at.desc(), TrainingJob.id)


@router.get("/{job_id}", response_model=TrainingJobPublic, responses=v1_errors(404))
def get_training_job(job_id: Id, session: SessionDep, principal: Reader) -> TrainingJob:
    """One training job with progress and metrics."""
    return _job(session, principal, job_id)


@router.delete("/{job_id}", response_model=TrainingJobPublic, responses=v1_errors(404, 409))
def cancel_training_job(job_id: Id, session: SessionDep, settings: SettingsDep, principal: Writer) -> TrainingJob:
    """Cancel a queued or running training job (stops its Ray Job)."""
    job = _job(session, principal, job_id)
    if not end_job(session, job.id, "cancelled", "cancelled by user"):
        session.rollback()
        raise ApiError(409, f"Training job is already {_job(session, principal, job_id).status}")
    session.commit()
    session.refresh(job)
    if job.ray_job_id:
        stop_job(settings, job.ray_job_id)
    return job


@router.get("/{job_id}/logs", response_model=TrainingJobLogs, responses=v1_errors(404))
def get_training_logs(job_id: Id, session: SessionDep, principal: Reader, page: PageDep) -> dict:
    """The job's training log (preprocessing, epochs, evaluation, its end), oldest first."""
    job = _job(session, principal, job_id)
    entries = select(TrainingJobLogEntry).where(TrainingJobLogEntry.training_job_id == job.id)
    return {"job_id": job.id, **page.fetch(session, entries, TrainingJobLogEntry.id)}
