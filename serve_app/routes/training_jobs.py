"""v1 training jobs: checked, recorded, then run as Ray Jobs (train_jobs.detector)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from cluster.accounts import Principal
from cluster.launcher import LaunchError, stop_job
from cluster.tables import TrainingJob, TrainingJobLogEntry
from cluster.training import TrainingRefused, create_detector_training, end_job, launch_detector_training
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
    try:
        job = create_detector_training(
            session, settings, principal.organization_id, body.dataset_id, body.annotation_set_id, body.config,
            created_by=principal.key_id,
        )
    except TrainingRefused as e:
        raise ApiError(e.status_code, str(e)) from e
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
