"""Custom STT model records: status transitions, training log, Ray Job launch and reconciliation.

One implementation shared by the v3 routes and the training job (``train_jobs.stt``)::

    1 not running --first train pair--> 2 ready --POST /run--> 3 running --> 4 success
                  <--last train pair removed--                            \\-> 5 failed
    4 and 5 may be trained again (back to 3).

Every transition out of 3 is a conditional UPDATE (``WHERE training_status = 3``), so the
job, the API and the reconciler racing on one model leave exactly one outcome.
"""

from __future__ import annotations

import logging
import shlex
from typing import Any, NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cluster.blob_keys import custom_checkpoint_key, pair_audio_key
from cluster.db import session_scope
from cluster import registry
from cluster.launcher import LaunchError, ended_ray_job, jobs_client, launch_run, ray_job_id_for
from cluster.outbox import record_event
from cluster.stt_tables import CustomModel, TrainingDataPair, TrainingLogEntry
from cluster.tables import Organization, utcnow
from schemas.augmentation import Augmentation
from schemas.common import LOG_LEVELS, progress_percent
from schemas.settings import Settings
from schemas.stt import (
    COUNTED_BY_LIMIT,
    STATUS_MESSAGES,
    TRAINABLE,
    TrainingStatus,
)

log = logging.getLogger("fathom.custom_models")

STT_MODULE = "train_jobs.stt"
MAX_ERROR_CHARS = 4000
SECONDS_PER_HOUR = 3600.0


class TrainingRefused(Exception):
    """POST /run cannot start training; subclasses carry what the answer reports."""


class ModelNotReady(TrainingRefused):
    def __init__(self, current_status: int):
        super().__init__(f"model is in status {current_status}; training needs status {int(TrainingStatus.READY)}")
        self.current_status = current_status


class TrainingInProgress(TrainingRefused):
    def __init__(self, training_progress: float):
        super().__init__("training already in progress")
        self.training_progress = training_progress


class InsufficientData(TrainingRefused):
    def __init__(self, current_hours: float, required_hours: float):
        super().__init__(f"{current_hours:.4g} hours of training audio; {required_hours:.4g} required")
        self.current_hours = current_hours
        self.required_hours = required_hours


class ModelLimitExceeded(TrainingRefused):
    def __init__(self, limit: int, counted: int):
        super().__init__(f"{counted} models trained or training; the organization's limit is {limit}")
        self.limit = limit
        self.counted = counted


class TrainingNotActive(RuntimeError):
    """The model is no longer training (failed by the reconciler, or deleted): the result is not recorded."""


class DataPair(NamedTuple):
    """One pair as the training job reads it."""

    type: str  # "train" | "test"
    audio_key: str  # blob key of the uploaded audio file
    transcript: str  # normalised (data_pipelines.text.normalize_transcript)
    duration_seconds: float


class TrainingRun(NamedTuple):
    """What a training job needs besides the data: which base model, and where to write the result."""

    model_id: int
    run: int  # 1 for the first POST /run of this model, then 2, ...
    base_model: str
    language: str
    checkpoint_key: str  # a fresh key per run, so servers caching by key never serve a stale model


def submission_id_for(model_id: int, run: int) -> str:
    """Ray refuses a reused submission id, and a model may be trained again: one id per run."""
    return ray_job_id_for("stt", f"{model_id}-{run}")


def set_status(model: CustomModel, status: TrainingStatus, message: str | None = None) -> None:
    model.training_status = int(status)
    model.status_message = (message or STATUS_MESSAGES[status])[:500]


def add_log(session: Session, model_id: int, message: str, level: str = "info") -> None:
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {LOG_LEVELS}")
    session.add(TrainingLogEntry(model_id=model_id, level=level, message=message))


def training_hours(session: Session, model_id: int) -> float:
    """Hours of ``train`` audio of a model (test pairs do not count towards the minimum)."""
    seconds = session.scalar(
        select(func.coalesce(func.sum(TrainingDataPair.duration_seconds), 0.0)).where(
            TrainingDataPair.model_id == model_id, TrainingDataPair.type == "train"
        )
    )
    return float(seconds) / SECONDS_PER_HOUR


# --- training data ---------------------------------------------------------------------------


def add_pair(session: Session, model: CustomModel, **fields: Any) -> TrainingDataPair:
    """Insert a pair (flushed: its id and ``audio_key`` are set) and move 1 -> 2 on the first train pair.

    The caller stores the audio under ``pair.audio_key`` before committing.
    """
    if model.training_status == TrainingStatus.RUNNING:
        raise TrainingInProgress(model.training_progress)
    pair = TrainingDataPair(model_id=model.id, audio_key="", **fields)
    session.add(pair)
    session.flush()
    pair.audio_key = pair_audio_key(model.id, pair.id)
    if pair.type == "train" and model.training_status == TrainingStatus.NOT_RUNNING:
        set_status(model, TrainingStatus.READY)
    model.updated_at = utcnow()
    return pair


def remove_pair(session: Session, model: CustomModel, pair: TrainingDataPair) -> None:
    """Delete a pair; a model left without train pairs goes back from 2 to 1."""
    if model.training_status == TrainingStatus.RUNNING:
        raise TrainingInProgress(model.training_progress)
    session.delete(pair)
    session.flush()
    if model.training_status == TrainingStatus.READY:
        left = session.scalar(
            select(func.count()).where(TrainingDataPair.model_id == model.id, TrainingDataPair.type == "train")
        )
        if not left:
            set_status(model, TrainingStatus.NOT_RUNNING)
    model.updated_at = utcnow()


# --- starting training --------------------------------------------------------------------------


def model_limit(session: Session, settings: Settings, organization_id: str) -> int | None:
    """The organization's own limit, else the deployment default; None: unlimited."""
    own = session.scalar(select(Organization.custom_model_limit).where(Organization.id == organization_id))
    return own if own is not None else settings.stt_custom_model_limit


def begin_training(
    session: Session, settings: Settings, model_id: int, organization_id: str, *, run_by: str | None = None
) -> CustomModel:
    """Claim the model for a run (status 3) and commit, or raise a :class:`TrainingRefused` and change nothing.

    The claim is the first write of the transaction (SQLite: takes the write lock; PostgreSQL:
    locks the row), so the checks after it see a settled model; the organization row lock
    serializes the plan-limit count among one organization's concurrent starts.
    """
    now = utcnow()
    claimed = session.execute(
        update(CustomModel)
        .where(
            CustomModel.id == model_id,
            CustomModel.organization_id == organization_id,
            CustomModel.training_status.in_([int(s) for s in TRAINABLE]),
        )
        .values(
            training_status=int(TrainingStatus.RUNNING), training_runs=CustomModel.training_runs + 1, updated_at=now
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    try:
        model = session.get(CustomModel, model_id, populate_existing=True)
        if model is None or model.organization_id != organization_id:
            raise LookupError(f"custom model {model_id} not found")
        if not claimed:
            if model.training_status == TrainingStatus.RUNNING:
                raise TrainingInProgress(model.training_progress)
            raise ModelNotReady(model.training_status)
        hours = training_hours(session, model_id)
        if hours < settings.stt_min_training_hours:
            raise InsufficientData(hours, settings.stt_min_training_hours)
        session.execute(select(Organization.id).where(Organization.id == organization_id).with_for_update())
        limit = model_limit(session, settings, organization_id)
        if limit is not None:
            counted = session.scalar(
                select(func.count()).where(
                    CustomModel.organization_id == organization_id,
                    CustomModel.id != model_id,
                    CustomModel.training_status.in_([int(s) for s in COUNTED_BY_LIMIT]),
                )
            )
            if counted >= limit:
                raise ModelLimitExceeded(limit, counted)
    except BaseException:
        session.rollback()
        raise
    set_status(model, TrainingStatus.RUNNING)
    model.training_progress = 0.0
    model.started_training_at, model.finished_training_at, model.failed_at = now, None, None
    model.error, model.training_metrics, model.ray_job_id, model.run_by = None, None, None, run_by
    add_log(session, model.id, "Training started")
    session.commit()
    return model


def launch(session: Session, settings: Settings, model: CustomModel, augmentation: Augmentation | None = None) -> None:
    """Submit the run's Ray Job; on failure the model fails (status 5) and LaunchError is raised.

    ``augmentation`` travels on the job's command line; None leaves the job's default.
    """
    run = model.training_runs
    extra = [] if augmentation is None else ["--augmentation", shlex.quote(augmentation.model_dump_json())]
    try:
        ray_job_id = launch_run(
            session,
            settings,
            STT_MODULE,
            ["finetune", "--model-id", str(model.id), *extra],
            submission_id=submission_id_for(model.id, run),
            metadata={"fathom_custom_model": str(model.id), "kind": "stt", "training_run": str(run)},
            failed=lambda s, reason: _fail_where_running(s, model.id, reason),
        )
    except LaunchError:
        session.refresh(model)
        raise
    session.execute(
        update(CustomModel)
        .where(CustomModel.id == model.id)
        .values(ray_job_id=ray_job_id)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    session.refresh(model)


def start_training(
    session: Session,
    settings: Settings,
    model_id: int,
    organization_id: str,
    augmentation: Augmentation | None = None,
    *,
    run_by: str | None = None,
) -> CustomModel:
    """POST /run: :func:`begin_training` then :func:`launch`."""
    model = begin_training(session, settings, model_id, organization_id, run_by=run_by)
    launch(session, settings, model, augmentation)
    return model


def _fail_where_running(session: Session, model_id: int, error: str, *conditions: Any) -> bool:
    now = utcnow()
    changed = session.execute(
        update(CustomModel)
        .where(CustomModel.id == model_id, CustomModel.training_status == int(TrainingStatus.RUNNING), *conditions)
        .values(
            training_status=int(TrainingStatus.FAILED),
            status_message=STATUS_MESSAGES[TrainingStatus.FAILED],
            error=error[:MAX_ERROR_CHARS],
            failed_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed:
        add_log(session, model_id, error[:MAX_ERROR_CHARS], level="error")
        _record_end(session, session.get(CustomModel, model_id), error[:MAX_ERROR_CHARS])
    return bool(changed)


def _record_end(session: Session, model: CustomModel, error: str | None, version: int | None = None,
                metrics: dict[str, Any] | None = None) -> None:
    """``custom_model.training_succeeded|training_failed``, in the transaction that ends the run."""
    summary = {k: v for k, v in (metrics or {}).items() if k in ("word_error_rate", "character_error_rate") and isinstance(v, (int, float))}
    record_event(
        session, model.organization_id, "custom_model.training_failed" if error else "custom_model.training_succeeded", str(model.id),
        ids={"custom_model_id": model.id, "training_run": model.training_runs, "version": version, "model_name": registry.stt_name(model.id)},
        status="failed" if error else "succeeded", error=error, summary=summary,
        links={"custom_model": f"/api/v3/custom_models/{model.id}", "log": f"/api/v3/custom_models/{model.id}/log"},
    )


# --- called by the training job -------------------------------------------------------------------


def training_run(url: str, model_id: int) -> TrainingRun:
    """The current run of a model; raises TrainingNotActive unless it is training."""
    with session_scope(url) as s:
        model = s.get(CustomModel, model_id)
        if model is None or model.training_status != TrainingStatus.RUNNING:
            raise TrainingNotActive(
                f"custom model {model_id} is {'gone' if model is None else f'in status {model.training_status}'}"
            )
        run = model.training_runs
        return TrainingRun(model.id, run, model.base_model, model.language, custom_checkpoint_key(model.id, run))


def load_training_data(url: str, model_id: int) -> list[DataPair]:
    """Every pair of a model in upload order: (type, audio_key, normalised transcript, duration_seconds)."""
    with session_scope(url) as s:
        rows = s.execute(
            select(
                TrainingDataPair.type,
                TrainingDataPair.audio_key,
                TrainingDataPair.transcript,
                TrainingDataPair.duration_seconds,
            )
            .where(TrainingDataPair.model_id == model_id)
            .order_by(TrainingDataPair.id)
        ).all()
    return [DataPair(*r) for r in rows]


def mark_progress(url: str, model_id: int, progress: float, message: str) -> bool:
    """Progress (percent, clamped to 0-100) and status message of a running model, plus a log entry.

    Returns False, changing nothing, when the model is no longer training; never raises for
    that, so a progress callback cannot kill the training loop.
    """
    with session_scope(url) as s:
        changed = s.execute(
            update(CustomModel)
            .where(CustomModel.id == model_id, CustomModel.training_status == int(TrainingStatus.RUNNING))
            .values(
                training_progress=progress_percent(progress),
                status_message=message[:500],
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed:
            add_log(s, model_id, message)
        return bool(changed)


def append_log(url: str, model_id: int, message: str, level: str = "info") -> None:
    """A log entry (GET .../log); ignored when the model was deleted."""
    with session_scope(url) as s:
        if s.get(CustomModel, model_id) is not None:
            add_log(s, model_id, message, level)


def complete(url: str, model_id: int, *, checkpoint_key: str, training_metrics: dict[str, Any]) -> int:
    """Record a successful run (status 4) and its registry version in one transaction; returns the version.

    Every run keeps its checkpoint: versions are immutable, so ``custom_model_{id}@1`` still
    transcribes after run 2. Raises TrainingNotActive when the model stopped training
    meanwhile: the checkpoint is not recorded and the caller should delete it.
    """
    with session_scope(url) as s:
        organization_id = s.scalar(select(CustomModel.organization_id).where(CustomModel.id == model_id))
    if organization_id is None:
        raise TrainingNotActive(f"custom model {model_id} is gone; its checkpoint was not recorded")
    registered_id = registry.ensure_registered(url, organization_id, registry.stt_name(model_id), "stt")
    with session_scope(url) as s:
        model = s.get(CustomModel, model_id, with_for_update=True)
        if model is None or model.training_status != TrainingStatus.RUNNING:
            state = "gone" if model is None else f"in status {model.training_status}"
            raise TrainingNotActive(f"custom model {model_id} is {state}; its checkpoint was not recorded")
        pairs = s.execute(
            select(TrainingDataPair.id, TrainingDataPair.type, TrainingDataPair.duration_seconds)
            .where(TrainingDataPair.model_id == model_id)
            .order_by(TrainingDataPair.id)
        ).all()
        version = registry.add_version(
            s,
            registered_id,
            custom_model_id=model.id,
            training_run=model.training_runs,
            checkpoint_key=checkpoint_key,
            data={
                "train_pair_ids": [p.id for p in pairs if p.type == "train"],
                "test_pair_ids": [p.id for p in pairs if p.type == "test"],
                "training_hours": round(sum(p.duration_seconds for p in pairs if p.type == "train") / SECONDS_PER_HOUR, 4),
            },
            config={"base_model": model.base_model, "language": model.language},
            metrics=dict(training_metrics),
            created_by=model.run_by,
        )
        set_status(model, TrainingStatus.SUCCESS)
        model.training_progress = 100.0
        model.finished_training_at = utcnow()
        model.checkpoint_key, model.training_metrics, model.error = checkpoint_key, dict(training_metrics), None
        wer = training_metrics.get("word_error_rate")
        add_log(
            s, model_id, "Training completed" + (f" - Final WER: {wer:.1f}%" if isinstance(wer, (int, float)) else "")
        )
        _record_end(s, model, None, version.version, training_metrics)
        return version.version


def fail(url: str, model_id: int, error: str) -> bool:
    """Record a failed run (status 5, ``error``); False when the model was not training."""
    with session_scope(url) as s:
        return _fail_where_running(s, model_id, error)


# --- reconciliation with Ray --------------------------------------------------------------------


def reconcile_stt_jobs(settings: Settings) -> int:
    """Fail running models whose Ray Job ended (or never started) without recording it; returns how many."""
    now = utcnow()
    with session_scope(settings.database_url) as s:
        running = s.execute(
            select(CustomModel.id, CustomModel.ray_job_id, CustomModel.updated_at).where(
                CustomModel.training_status == int(TrainingStatus.RUNNING)
            )
        ).all()
    if not running:
        return 0
    client = jobs_client(settings)
    changed = 0
    for model_id, ray_job_id, updated_at in running:
        ended = ended_ray_job(client, ray_job_id, updated_at, now)
        error = None if ended is None else ended.reason  # a stopped Ray Job is status 5 on v3, with that reason
        if error is not None:
            # Conditional on the same Ray Job: a run launched meanwhile is left alone.
            same_job = CustomModel.ray_job_id.is_(None) if ray_job_id is None else CustomModel.ray_job_id == ray_job_id
            with session_scope(settings.database_url) as s:
                changed += _fail_where_running(s, model_id, error, same_job)
    return changed
