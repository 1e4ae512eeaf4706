"""Inference job bookkeeping shared by the API and the dispatcher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cluster.db import session_scope
from cluster.tables import InferenceFile, InferenceJob, utcnow


@dataclass(frozen=True)
class JobCounts:
    total_files: int  # confirmed files (pending uploads are not counted)
    processed_files: int  # completed + failed: the vendor polling loop ends when this equals total_files
    failed_files: int
    active_files: int  # queued + processing
    total_detections: int


def job_counts(session: Session, job_ids: list[str]) -> dict[str, JobCounts]:
    rows = session.execute(
        select(
            InferenceFile.inference_job_id,
            InferenceFile.status,
            func.count(),
            func.coalesce(func.sum(InferenceFile.detection_count), 0),
        )
        .where(InferenceFile.inference_job_id.in_(job_ids))
        .group_by(InferenceFile.inference_job_id, InferenceFile.status)
    ).all()
    acc: dict[str, dict[str, int]] = {j: {} for j in job_ids}
    dets: dict[str, int] = {j: 0 for j in job_ids}
    for job_id, status, n, d in rows:
        acc[job_id][status] = int(n)
        if status == "completed":
            dets[job_id] += int(d)
    out = {}
    for job_id, c in acc.items():
        done, failed = c.get("completed", 0), c.get("failed", 0)
        active = c.get("queued", 0) + c.get("processing", 0)
        out[job_id] = JobCounts(done + failed + active, done + failed, failed, active, dets[job_id])
    return out


def derive_status(job: InferenceJob, counts: JobCounts) -> str:
    if job.status == "cancelled":
        return "cancelled"
    if counts.total_files == 0:
        return "pending"
    if counts.active_files:
        return "processing"
    return "failed" if counts.failed_files == counts.total_files else "completed"


def refresh_job(session: Session, job_id: str) -> InferenceJob | None:
    """Store the status derived from the job's files (so list filters see it)."""
    job = session.get(InferenceJob, job_id)
    if job is None:
        return None
    counts = job_counts(session, [job_id])[job_id]
    status = derive_status(job, counts)
    if status != job.status:
        job.status = status
        if status in ("completed", "failed"):
            job.completed_at = utcnow()
            if status == "failed":
                job.error_message = "every file failed; see each file's error_message"
        else:
            job.completed_at = None
    return job


def finish_file(
    url: str,
    file_id: str,
    *,
    detections: list[dict[str, Any]] | None = None,
    duration_ms: int | None = None,
    error: str | None = None,
) -> None:
    """Record a file's result (completed, or failed with ``error``) and refresh its job."""
    with session_scope(url) as s:
        row = s.get(InferenceFile, file_id)
        if row is None or row.status in ("completed", "failed"):
            return
        row.lease_until = None
        row.processed_at = utcnow()
        if duration_ms is not None:
            row.duration_ms = duration_ms
        if error is None:
            row.status = "completed"
            row.detections = detections or []
            row.detection_count = len(row.detections)
            row.error_message = None
        else:
            row.status = "failed"
            row.error_message = error
        s.flush()
        refresh_job(s, row.inference_job_id)


def cancel_job(session: Session, job: InferenceJob) -> None:
    """Stop a job: queued and unconfirmed files fail as cancelled; in-flight files finish."""
    job.status = "cancelled"
    job.completed_at = utcnow()
    session.execute(
        update(InferenceFile)
        .where(InferenceFile.inference_job_id == job.id, InferenceFile.status.in_(("pending", "queued")))
        .values(status="failed", error_message="inference job cancelled", lease_until=None, processed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
