"""Training job records: launch, progress, completion, and the job's log. Used by the API and by the jobs themselves.

Each end of a job writes its log entry in the same transaction as the status change, so
the log never says less than the record.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cluster import registry
from cluster.db import session_scope
from cluster.launcher import LaunchError, ended_ray_job, jobs_client, launch_run, ray_job_id_for
from cluster.outbox import record_event
from cluster.tables import Annotation, AnnotationSet, AudioFile, Dataset, DetectorModel, TrainingJob, TrainingJobLogEntry, utcnow
from schemas.common import LOG_LEVELS, progress_percent
from schemas.training import ACTIVE_TRAINING, TrainingConfig
from schemas.settings import Settings

DETECTOR_MODULE = "train_jobs.detector"


class JobCancelled(RuntimeError):
    """The record was cancelled (or otherwise ended) while the job ran."""


class TrainingRefused(Exception):
    """A detector training request whose prerequisites do not hold; ``status_code`` is the v1 answer."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code


def create_detector_training(
    session: Session,
    settings: Settings,
    organization_id: str,
    dataset_id: str,
    annotation_set_id: str,
    config: TrainingConfig,
    *,
    created_by: str | None = None,
) -> TrainingJob:
    """Check every prerequisite of training on (dataset, annotation set) and add the queued record.

    The API and ``python -m train_jobs.detector`` both start a run here, so a standalone
    submission is refused exactly where the API would refuse it. Flushed, not committed.
    """
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.organization_id != organization_id:
        raise TrainingRefused(404, "Dataset not found")
    aset = session.get(AnnotationSet, annotation_set_id)
    if aset is None or aset.organization_id != organization_id or aset.dataset_id != dataset.id:
        raise TrainingRefused(404, "Annotation set not found")
    known = [t["name"] for t in dataset.artifact_types]
    unknown = [t for t in config.artifact_types if t not in known]
    if unknown:
        raise TrainingRefused(400, f"artifact_types {unknown} are not types of this dataset; valid types: {known}")
    if aset.status != "published":
        raise TrainingRefused(409, "Annotation set must be published before training")
    statuses = dict(
        session.execute(
            select(AudioFile.processing_status, func.count()).where(AudioFile.dataset_id == dataset.id).group_by(AudioFile.processing_status)
        ).all()
    )
    not_ready = {k: v for k, v in statuses.items() if k != "ready"}
    if not statuses.get("ready"):
        raise TrainingRefused(409, "Dataset has no ready audio files")
    if not_ready:
        raise TrainingRefused(409, f"Every audio file must be ready before training; not ready: {not_ready}")
    total_ms = session.scalar(select(func.coalesce(func.sum(AudioFile.duration_ms), 0)).where(AudioFile.dataset_id == dataset.id))
    if total_ms / 1000 < settings.min_training_audio_s:
        raise TrainingRefused(
            400,
            f"Dataset has {total_ms / 60000:.1f} minutes of audio; training needs at least {settings.min_training_audio_s / 60:.1f}",
        )
    counts = dict(
        session.execute(
            select(Annotation.artifact_type, func.count()).where(Annotation.annotation_set_id == aset.id).group_by(Annotation.artifact_type)
        ).all()
    )
    missing = [t for t in config.artifact_types if not counts.get(t)]
    if missing:
        raise TrainingRefused(400, f"Annotation set has no annotations of type(s) {missing}; each requested type needs at least one")
    if statuses["ready"] < 2:
        raise TrainingRefused(400, "Training needs at least 2 audio files (one for validation)")
    try:
        registry.check_kind(session, organization_id, registered_name(config, dataset.id), "detector")
    except registry.RegistryError as e:
        raise TrainingRefused(e.status_code, str(e)) from e
    job = TrainingJob(
        organization_id=organization_id,
        dataset_id=dataset.id,
        annotation_set_id=aset.id,
        config=config.model_dump(),
        created_by=created_by,
    )
    session.add(job)
    session.flush()
    return job


def add_log(session: Session, job_id: str, message: str, level: str = "info") -> None:
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {LOG_LEVELS}")
    session.add(TrainingJobLogEntry(training_job_id=job_id, level=level, message=message))


def end_job(session: Session, job_id: str, status: str, message: str) -> bool:
    """Move a queued or running record to ``failed`` or ``cancelled`` with its reason, logged alike.

    A conditional update: of the API's cancel, the driver's failure and reconciliation, the
    first to end the job wins and the others change nothing (False).
    """
    changed = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status.in_(ACTIVE_TRAINING))
        .values(status=status, error_message=message[:4000], completed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed:
        add_log(session, job_id, f"{status}: {message}", "error" if status == "failed" else "warning")
        _record_end(session, session.get(TrainingJob, job_id), status, message)
    return bool(changed)


def _record_end(session: Session, job: TrainingJob, status: str, error: str | None) -> None:
    """``training_job.succeeded|failed|cancelled``, in the transaction that ends the job."""
    link = f"/api/v1/training-jobs/{job.id}"
    links = {"training_job": link, "logs": f"{link}/logs"}
    summary: dict[str, Any] = {}
    if job.model_id:
        links["model"] = f"/api/v1/models/{job.model_id}"
        metrics = job.metrics or {}
        summary = {k: metrics[k] for k in ("event_f1", "event_precision", "event_recall") if isinstance(metrics.get(k), (int, float))}
    record_event(
        session, job.organization_id, f"training_job.{'succeeded' if status == 'completed' else status}", job.id,
        ids={"training_job_id": job.id, "dataset_id": job.dataset_id, "annotation_set_id": job.annotation_set_id, "model_id": job.model_id},
        status=status, error=error, summary=summary, links=links,
    )


def launch_detector_training(session: Session, settings: Settings, job: TrainingJob) -> None:
    """Submit the Ray Job for a queued record; on failure the record is failed and LaunchError raised."""
    try:
        job.ray_job_id = launch_run(
            session,
            settings,
            DETECTOR_MODULE,
            ["--job-id", job.id],
            submission_id=ray_job_id_for("detector", job.id),
            metadata={"fathom_training_job": job.id, "kind": "detector"},
            failed=lambda s, reason: end_job(s, job.id, "failed", reason),
        )
    except LaunchError:
        session.refresh(job)
        raise
    session.commit()


def mark_running(url: str, job_id: str, *, ray_job_id: str | None) -> None:
    with session_scope(url) as s:
        job = s.get(TrainingJob, job_id)
        if job is None:
            raise LookupError(f"training job {job_id} not found")
        if job.status not in ACTIVE_TRAINING:
            raise JobCancelled(f"training job {job_id} is {job.status}")
        add_log(s, job_id, "training restarted" if job.status == "running" else "training started")
        job.status = "running"
        job.started_at = job.started_at or utcnow()
        if ray_job_id:
            job.ray_job_id = ray_job_id


def report_progress(
    url: str,
    job_id: str,
    *,
    progress: float,
    epoch: int | None = None,
    metrics: dict[str, Any] | None = None,
    message: str | None = None,
) -> None:
    """Write progress (and ``message`` to the log) if the record is still running."""
    values: dict[str, Any] = {"progress": progress_percent(progress)}
    if epoch is not None:
        values["current_epoch"] = epoch
    if metrics is not None:
        values["metrics"] = metrics
    with session_scope(url) as s:
        changed = s.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.status == "running")
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed and message:
            add_log(s, job_id, message)


def is_active(url: str, job_id: str) -> bool:
    with session_scope(url) as s:
        job = s.get(TrainingJob, job_id)
        return job is not None and job.status in ACTIVE_TRAINING


def registered_name(config: TrainingConfig, dataset_id: str) -> str:
    return config.registered_model or registry.default_detector_name(dataset_id)


def complete_with_model(url: str, job_id: str, model: DetectorModel, metrics: dict[str, Any]) -> str:
    """Register the model as the next version of its registered model and complete the job, in one transaction.

    Refuses (JobCancelled) if the job was cancelled meanwhile: then neither the model nor its version exists.
    """
    with session_scope(url) as s:
        job = s.get(TrainingJob, job_id)
        if job is None:
            raise JobCancelled(f"training job {job_id} is gone; model not registered")
        config = TrainingConfig.model_validate(job.config)
        name, dataset_id, set_id = registered_name(config, job.dataset_id), job.dataset_id, job.annotation_set_id
        set_version = s.scalar(select(AnnotationSet.version).where(AnnotationSet.id == set_id))
    registered_id = registry.ensure_registered(url, model.organization_id, name, "detector")
    with session_scope(url) as s:
        job = s.get(TrainingJob, job_id, with_for_update=True)
        if job is None or job.status != "running":
            raise JobCancelled(f"training job {job_id} is {job.status if job else 'gone'}; model not registered")
        s.add(model)
        s.flush()
        version = registry.add_version(
            s,
            registered_id,
            detector_model_id=model.id,
            training_job_id=job_id,
            data={"dataset_id": dataset_id, "annotation_set_id": set_id, "annotation_set_version": set_version},
            config=dict(job.config),
            metrics=dict(model.eval_metrics or {}),
            created_by=job.created_by,
        )
        job.model_id = model.id
        job.status, job.progress, job.completed_at = "completed", 100.0, utcnow()
        job.metrics = metrics
        add_log(s, job_id, f"completed: model {model.id} registered as {name}@{version.version}")
        _record_end(s, job, "completed", None)
        return model.id


def fail_job(url: str, job_id: str, message: str) -> None:
    """Fail an active record (a no-op once it ended: a cancel that won keeps its own reason)."""
    with session_scope(url) as s:
        end_job(s, job_id, "failed", message)


def reconcile_training_jobs(settings: Settings) -> int:
    """Fail or cancel active records whose Ray Job is no longer running; returns how many changed.

    The records are read in one short transaction and each end is one conditional update, so
    no database connection waits on the Jobs API, and a driver that records its own end at
    the same moment wins.
    """
    url = settings.database_url
    with session_scope(url) as s:
        active = s.execute(
            select(TrainingJob.id, TrainingJob.ray_job_id, TrainingJob.created_at).where(TrainingJob.status.in_(ACTIVE_TRAINING))
        ).all()
    if not active:
        return 0
    client, now, changed = jobs_client(settings), utcnow(), 0
    for job_id, ray_job_id, created_at in active:
        ended = ended_ray_job(client, ray_job_id, created_at, now)
        if ended is not None:
            with session_scope(url) as s:  # a stopped Ray Job is a cancel on v1
                changed += end_job(s, job_id, "cancelled" if ended.stopped else "failed", ended.reason)
    return changed
