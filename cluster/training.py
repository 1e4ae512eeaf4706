"""Training job records: launch, progress, completion. Used by the API and by the jobs themselves."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from cluster.db import session_scope
from cluster.launcher import ray_job_id_for, submit_module
from cluster.tables import DetectorModel, TrainingJob, utcnow
from schemas.settings import Settings

DETECTOR_MODULE = "train_jobs.detector"


class JobCancelled(RuntimeError):
    """The record was cancelled (or otherwise ended) while the job ran."""


def launch_detector_training(session: Session, settings: Settings, job: TrainingJob) -> None:
    """Submit the Ray Job for a queued record; on failure the record is failed and LaunchError raised."""
    submission_id = ray_job_id_for("detector", job.id)
    try:
        job.ray_job_id = submit_module(
            settings,
            DETECTOR_MODULE,
            ["--job-id", job.id],
            submission_id=submission_id,
            metadata={"fathom_training_job": job.id, "kind": "detector"},
        )
    except Exception as e:
        job.status, job.error_message, job.completed_at = "failed", str(e)[:2000], utcnow()
        session.commit()
        raise
    session.commit()


def mark_running(url: str, job_id: str, *, ray_job_id: str | None) -> None:
    with session_scope(url) as s:
        job = s.get(TrainingJob, job_id)
        if job is None:
            raise LookupError(f"training job {job_id} not found")
        if job.status not in ("queued", "running"):
            raise JobCancelled(f"training job {job_id} is {job.status}")
        job.status = "running"
        job.started_at = job.started_at or utcnow()
        if ray_job_id:
            job.ray_job_id = ray_job_id


def report_progress(url: str, job_id: str, *, progress: float, epoch: int | None = None, metrics: dict[str, Any] | None = None) -> None:
    """Write progress if the record is still active; raising would kill the training controller, so don't."""
    values: dict[str, Any] = {"progress": round(min(max(progress, 0.0), 100.0), 2)}
    if epoch is not None:
        values["current_epoch"] = epoch
    if metrics is not None:
        values["metrics"] = metrics
    with session_scope(url) as s:
        s.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.status == "running")
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def is_active(url: str, job_id: str) -> bool:
    with session_scope(url) as s:
        job = s.get(TrainingJob, job_id)
        return job is not None and job.status in ("queued", "running")


def complete_with_model(url: str, job_id: str, model: DetectorModel, metrics: dict[str, Any]) -> str:
    """Register the model and complete the job in one transaction; refuses if the job was cancelled."""
    with session_scope(url) as s:
        job = s.get(TrainingJob, job_id, with_for_update=True)
        if job is None or job.status != "running":
            raise JobCancelled(f"training job {job_id} is {job.status if job else 'gone'}; model not registered")
        s.add(model)
        s.flush()
        job.model_id = model.id
        job.status, job.progress, job.completed_at = "completed", 100.0, utcnow()
        job.metrics = metrics
        return model.id


def fail_job(url: str, job_id: str, message: str) -> None:
    with session_scope(url) as s:
        s.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.status.in_(("queued", "running")))
            .values(status="failed", error_message=message[:4000], completed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
