"""Durable work queues in the metadata database: claims with leases.

A worker claims a row by a conditional UPDATE that only one process can win (no
row locks needed, so SQLite and PostgreSQL behave alike). A claim expires after
``lease_s``: work left behind by a dead replica or a restart is claimed again, up to
``max_attempts`` times, after which the row is failed with a message saying so.
"""

from __future__ import annotations

from datetime import timedelta
from typing import get_args

from sqlalchemy import and_, func, or_, select, update

from cluster.db import session_scope
from cluster.inference import lock_job, refresh_job
from cluster.stt_tables import CustomModel
from cluster.tables import AudioFile, InferenceFile, InferenceJob, TrainingJob, utcnow
from schemas.stt import TrainingStatus as SttStatus
from schemas.training import TrainingStatus

INFERENCE_TERMINAL = ("completed", "failed")


def claim_inference_files(url: str, *, limit: int, lease_s: float, max_attempts: int) -> list[tuple[str, str]]:
    """Claim up to ``limit`` queued (or abandoned) files; returns (file_id, job_id) pairs, oldest first."""
    now = utcnow()
    claimable = or_(
        InferenceFile.status == "queued",
        and_(InferenceFile.status == "processing", InferenceFile.lease_until < now),
    )
    _fail_exhausted_inference(url, claimable, max_attempts)
    claimed: list[tuple[str, str]] = []
    with session_scope(url) as s:
        rows = s.execute(
            select(InferenceFile.id, InferenceFile.inference_job_id)
            .where(claimable)
            .order_by(InferenceFile.queued_at)
            .limit(limit)
        ).all()
        for file_id, job_id in rows:
            won = s.execute(
                update(InferenceFile)
                .where(InferenceFile.id == file_id, claimable)
                .values(status="processing", lease_until=now + timedelta(seconds=lease_s), attempts=InferenceFile.attempts + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                claimed.append((file_id, job_id))
    if claimed:  # a transaction of its own: job rows are locked before file rows (cluster.inference)
        with session_scope(url) as s:
            s.execute(
                update(InferenceJob)
                .where(InferenceJob.id.in_({j for _, j in claimed}), InferenceJob.started_at.is_(None))
                .values(started_at=now)
                .execution_options(synchronize_session=False)
            )
    return claimed


def claim_dataset_audio(url: str, *, limit: int, lease_s: float, max_attempts: int) -> list[str]:
    """Claim confirmed dataset audio for one preprocessing run (status stays normalizing/embedding)."""
    now = utcnow()
    claimable = and_(
        AudioFile.processing_status.in_(("normalizing", "embedding")),
        or_(AudioFile.lease_until.is_(None), AudioFile.lease_until < now),
    )
    claimed: list[str] = []
    with session_scope(url) as s:
        _fail_exhausted(s, AudioFile, claimable, "processing_status", max_attempts)
        ids = s.scalars(select(AudioFile.id).where(claimable).order_by(AudioFile.updated_at).limit(limit)).all()
        for file_id in ids:
            won = s.execute(
                update(AudioFile)
                .where(AudioFile.id == file_id, claimable)
                .values(lease_until=now + timedelta(seconds=lease_s), attempts=AudioFile.attempts + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                claimed.append(file_id)
    return claimed


def release_inference_file(url: str, file_id: str) -> None:
    """Give a claimed file back to the queue at once (its worker failed, not the file)."""
    with session_scope(url) as s:
        s.execute(
            update(InferenceFile)
            .where(InferenceFile.id == file_id, InferenceFile.status == "processing")
            .values(status="queued", lease_until=None)
            .execution_options(synchronize_session=False)
        )


def release_dataset_audio(url: str, file_ids: list[str]) -> None:
    with session_scope(url) as s:
        s.execute(
            update(AudioFile)
            .where(AudioFile.id.in_(file_ids), AudioFile.processing_status.in_(("normalizing", "embedding")))
            .values(lease_until=None)
            .execution_options(synchronize_session=False)
        )


def _fail_exhausted_inference(url: str, claimable, max_attempts: int) -> None:
    """Fail files out of attempts, one job per transaction: lock the job, fail, refresh its status.

    A file out of attempts fails alone (a file that kills its worker every time looks the same as
    workers failing on it), so its job goes on and ends ``completed`` with it among failed_files.
    """
    exhausted = and_(claimable, InferenceFile.attempts >= max_attempts)
    with session_scope(url) as s:
        job_ids = s.scalars(select(InferenceFile.inference_job_id).where(exhausted).distinct()).all()
    for job_id in job_ids:
        with session_scope(url) as s:
            lock_job(s, job_id)
            _fail_exhausted(s, InferenceFile, and_(claimable, InferenceFile.inference_job_id == job_id), "status", max_attempts)
            refresh_job(s, job_id)


def _fail_exhausted(s, table, claimable, status_col: str, max_attempts: int) -> None:
    s.execute(
        update(table)
        .where(claimable, table.attempts >= max_attempts)
        .values(
            {
                status_col: "failed",
                "lease_until": None,
                "error_message": f"processing did not finish after {max_attempts} attempts",
            }
        )
        .execution_options(synchronize_session=False)
    )


def depths(url: str) -> dict[str, int]:
    """Work waiting or in progress: inference files (queued, processing) and dataset audio being preprocessed."""
    with session_scope(url) as s:
        files = s.scalar(select(func.count()).select_from(InferenceFile).where(InferenceFile.status.in_(("queued", "processing"))))
        audio = s.scalar(
            select(func.count()).select_from(AudioFile).where(AudioFile.processing_status.in_(("normalizing", "embedding")))
        )
    return {"inference_files": int(files or 0), "dataset_audio": int(audio or 0)}


def training_counts(url: str) -> dict[str, dict[str, int]]:
    """Training runs by status, every status present (zeros too): {"detector": {...}, "stt": {...}}."""
    detector = {status: 0 for status in get_args(TrainingStatus)}
    stt = {status.name.lower(): 0 for status in SttStatus}
    with session_scope(url) as s:
        for status, n in s.execute(select(TrainingJob.status, func.count()).group_by(TrainingJob.status)):
            detector[status] = int(n)
        for status, n in s.execute(select(CustomModel.training_status, func.count()).group_by(CustomModel.training_status)):
            stt[SttStatus(status).name.lower()] = int(n)
    return {"detector": detector, "stt": stt}
