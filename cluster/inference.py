"""Inference job bookkeeping shared by the API and the dispatcher.

A job's status follows its files (pending -> processing -> completed, and back to processing
when a new file arrives) until it ends: ``cancelled`` by its owner, or ``failed`` for a
job-level cause (its model became unusable). Ended jobs stay ended and refuse new files.
A file that cannot be processed fails alone (``failed_files``, the file's ``error_message``).

Lock order: every transaction that changes a job's status locks the job row first
(``lock_job``), then touches its files. PostgreSQL then neither deadlocks nor lets two files
finishing at once each count the other as still active; SQLite serialises writers anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from cluster.db import session_scope
from cluster.outbox import record_event
from cluster.tables import DetectorModel, InferenceFile, InferenceJob, utcnow

JOB_ENDED = ("failed", "cancelled")  # no file, result or refresh moves a job out of these
CANCELLED_MESSAGE = "inference job cancelled"


@dataclass(frozen=True)
class JobCounts:
    """A job's state and file counts, read in one statement so they always agree.

    The vendor polling loop stops when ``processed_files == total_files`` and then reads
    ``status``: read apart, a file finishing in between shows "all processed" beside a
    stale "processing".
    """

    status: str
    error_message: str | None
    started_at: datetime | None
    completed_at: datetime | None
    total_files: int  # confirmed files (pending uploads are not counted)
    processed_files: int  # completed + failed: the vendor polling loop ends when this equals total_files
    failed_files: int
    active_files: int  # queued + processing
    total_detections: int


def job_counts(session: Session, job_ids: list[str]) -> dict[str, JobCounts]:
    rows = session.execute(
        select(
            InferenceJob.id,
            InferenceJob.status,
            InferenceJob.error_message,
            InferenceJob.started_at,
            InferenceJob.completed_at,
            InferenceFile.status,
            func.count(InferenceFile.id),
            func.coalesce(func.sum(InferenceFile.detection_count), 0),
        )
        .outerjoin(InferenceFile, InferenceFile.inference_job_id == InferenceJob.id)
        .where(InferenceJob.id.in_(job_ids))
        .group_by(InferenceJob.id, InferenceFile.status)
    ).all()
    jobs: dict[str, tuple] = {}
    acc: dict[str, dict[str, int]] = {j: {} for j in job_ids}
    dets: dict[str, int] = {j: 0 for j in job_ids}
    for job_id, job_status, error, started, completed, status, n, d in rows:
        jobs[job_id] = (job_status, error, started, completed)
        if status is not None:
            acc[job_id][status] = int(n)
        if status == "completed":
            dets[job_id] += int(d)
    out = {}
    for job_id, state in jobs.items():
        c = acc[job_id]
        done, failed = c.get("completed", 0), c.get("failed", 0)
        active = c.get("queued", 0) + c.get("processing", 0)
        out[job_id] = JobCounts(*state, done + failed + active, done + failed, failed, active, dets[job_id])
    return out


def derive_status(counts: JobCounts) -> str:
    """The status the files give a job; failed files count as processed, never as a job failure."""
    if counts.status in JOB_ENDED:
        return counts.status
    if counts.total_files == 0:
        return "pending"
    return "processing" if counts.active_files else "completed"


def model_refusal(model: DetectorModel | None) -> str | None:
    """Why ``model`` cannot run inference, or None when it can (the one rule for jobs and files)."""
    if model is None or model.archived_at is not None:
        return "Model is archived and cannot be used for inference"
    if not model.is_active:
        return "Model is inactive; reactivate it with PATCH is_active=true"
    return None


def lock_job(session: Session, job_id: str) -> InferenceJob | None:
    """The job row, current and locked until commit (FOR UPDATE; SQLite ignores it)."""
    return session.scalars(
        select(InferenceJob).where(InferenceJob.id == job_id).with_for_update().execution_options(populate_existing=True)
    ).first()


def refresh_job(session: Session, job_id: str) -> InferenceJob | None:
    """Store the status derived from the job's files (so list filters see it)."""
    job = lock_job(session, job_id)
    if job is None or job.status in JOB_ENDED:
        return job
    counts = job_counts(session, [job_id])[job_id]
    status = derive_status(counts)
    if status != job.status:
        job.status = status
        job.completed_at = utcnow() if status == "completed" else None
        if status == "completed":
            record_job_end(session, job, counts)
    job.error_message = None  # only a failed job carries one
    session.flush()
    return job


def record_job_end(session: Session, job: InferenceJob, counts: JobCounts | None = None) -> None:
    """``inference_job.completed|failed|cancelled``, in the transaction that moves the job there.

    A job that completes, takes a new file and completes again sends ``completed`` each time.
    """
    session.flush()
    counts = counts or job_counts(session, [job.id])[job.id]
    link = f"/api/v1/inference-jobs/{job.id}"
    record_event(
        session, job.organization_id, f"inference_job.{job.status}", job.id,
        ids={"inference_job_id": job.id, "model_id": job.model_id, "model_version": job.model_version}, status=job.status, error=job.error_message,
        summary={"total_files": counts.total_files, "processed_files": counts.processed_files,
                 "failed_files": counts.failed_files, "total_detections": counts.total_detections},
        links={"inference_job": link},
    )


def file_refusal(session: Session, job: InferenceJob) -> str | None:
    """Why ``job`` takes no new files (answered 409), or None.

    A model found unusable here fails the job (``fail_job``): the caller commits, then refuses.
    """
    if job.status == "cancelled":
        return "Inference job is cancelled"
    if job.status == "failed":
        return f"Inference job failed: {job.error_message}"
    reason = model_refusal(session.get(DetectorModel, job.model_id))
    if reason is None:
        return None
    fail_job(session, job.id, reason)
    return f"Inference job failed: {reason}"


def queue_file(session: Session, job_id: str, file_id: str) -> bool:
    """Confirm: pending -> queued, only while the file is pending and its job has not ended."""
    lock_job(session, job_id)
    won = session.execute(
        update(InferenceFile)
        .where(
            InferenceFile.id == file_id,
            InferenceFile.status == "pending",
            exists().where(InferenceJob.id == job_id, InferenceJob.status.not_in(JOB_ENDED)),
        )
        .values(status="queued", queued_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if won:
        refresh_job(session, job_id)
    return bool(won)


def finish_file(
    url: str,
    file_id: str,
    *,
    detections: list[dict[str, Any]] | None = None,
    duration_ms: int | None = None,
    error: str | None = None,
) -> None:
    """Record a claimed file's result (completed, or failed with ``error``) and refresh its job.

    A file no longer ``processing`` (finished already, failed with its job) keeps its state.
    """
    with session_scope(url) as s:
        job_id = s.scalar(select(InferenceFile.inference_job_id).where(InferenceFile.id == file_id))
        if job_id is None:
            return
        lock_job(s, job_id)
        values: dict[str, Any] = {"lease_until": None, "processed_at": utcnow()}
        if duration_ms is not None:
            values["duration_ms"] = duration_ms
        if error is None:
            # Each detection gets an id stable for the file's life: reviews name it.
            detections = [{**d, "id": f"d{i}"} for i, d in enumerate(detections or [])]
            values.update(status="completed", detections=detections, detection_count=len(detections), error_message=None)
        else:
            values.update(status="failed", error_message=error)
        won = s.execute(
            update(InferenceFile)
            .where(InferenceFile.id == file_id, InferenceFile.status == "processing")
            .values(values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won:
            refresh_job(s, job_id)


def _fail_files(session: Session, job_id: str, statuses: tuple[str, ...], message: str) -> None:
    session.execute(
        update(InferenceFile)
        .where(InferenceFile.inference_job_id == job_id, InferenceFile.status.in_(statuses))
        .values(status="failed", error_message=message, lease_until=None, processed_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def fail_job(session: Session, job_id: str, message: str) -> bool:
    """End a job ``failed`` with ``message`` for a job-level cause; its unfinished files fail with it.

    Never for a file's content. Returns False when the job had already ended.
    """
    lock_job(session, job_id)
    won = session.execute(
        update(InferenceJob)
        .where(InferenceJob.id == job_id, InferenceJob.status.not_in(JOB_ENDED))
        .values(status="failed", error_message=message[:2000], completed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if won:
        _fail_files(session, job_id, ("pending", "queued", "processing"), message[:2000])
        record_job_end(session, lock_job(session, job_id))
    return bool(won)


def record_job_failure(url: str, job_id: str, message: str) -> bool:
    """``fail_job`` in its own transaction (the dispatcher's entry point)."""
    with session_scope(url) as s:
        return fail_job(s, job_id, message)


def cancel_job(session: Session, job_id: str) -> bool:
    """Stop a pending or processing job: queued and unconfirmed files fail as cancelled; in-flight
    files finish. Returns False when the job is no longer pending or processing."""
    lock_job(session, job_id)
    won = session.execute(
        update(InferenceJob)
        .where(InferenceJob.id == job_id, InferenceJob.status.in_(("pending", "processing")))
        .values(status="cancelled", error_message=None, completed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if won:
        _fail_files(session, job_id, ("pending", "queued"), CANCELLED_MESSAGE)
        record_job_end(session, lock_job(session, job_id))
    return bool(won)
