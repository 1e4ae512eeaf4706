"""Training runs as Ray Jobs: submit, stop, and look them up through the Ray Jobs API.

A training record is the source of truth users poll; the Ray Job does the work and writes
progress into it. The driver's raw output stays with Ray (the dashboard's Jobs tab).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta
from collections.abc import Callable
from typing import Any, NamedTuple

import ray
from ray.job_submission import JobStatus, JobSubmissionClient
from sqlalchemy.orm import Session

from schemas.settings import Settings

log = logging.getLogger("fathom.launcher")

SUBMIT_GRACE_S = 60  # an active record with no Ray Job after this long failed to launch


class RayJobEnd(NamedTuple):
    """How a record's Ray Job ended without the record saying so itself."""

    stopped: bool  # stopped through the Jobs API (a cancel), else a failure
    reason: str


def ended_ray_job(client: JobSubmissionClient, ray_job_id: str | None, since: datetime, now: datetime) -> RayJobEnd | None:
    """The end of a record's Ray Job, or None while it may still run (or the API did not answer).

    ``since``: when the record was claimed for this run; without a Ray Job id after
    SUBMIT_GRACE_S the launch is taken to have failed. Both training lifecycles (detector
    training jobs, custom models) read their Ray Jobs through this one function.
    """
    if ray_job_id is None:
        if now - since > timedelta(seconds=SUBMIT_GRACE_S):
            return RayJobEnd(False, "training job was never launched")
        return None
    try:
        info = client.get_job_info(ray_job_id)
    except Exception as e:  # unknown to this cluster (e.g. the cluster was replaced)
        if "does not exist" in str(e) or "404" in str(e):
            return RayJobEnd(False, "the Ray job of this training run no longer exists (cluster restarted?)")
        log.warning("reading Ray job %s: %s", ray_job_id, e)
        return None
    if info.status == JobStatus.STOPPED:
        return RayJobEnd(True, "training job was stopped")
    if info.status == JobStatus.FAILED:
        return RayJobEnd(False, f"training process failed: {(info.message or '').strip()[:1000]}")
    if info.status == JobStatus.SUCCEEDED:
        return RayJobEnd(False, "training process exited without recording a result")
    return None


class LaunchError(RuntimeError):
    """The Ray Jobs API refused or could not be reached."""


def jobs_client(settings: Settings) -> JobSubmissionClient:
    try:
        return JobSubmissionClient(settings.dashboard_url)
    except Exception as e:  # connection refused, bad address
        raise LaunchError(f"Ray Jobs API at {settings.dashboard_url} unreachable: {e}") from e


def ray_job_id_for(kind: str, record_id: str) -> str:
    return f"fathom-{kind}-{record_id}"


def submit_module(settings: Settings, module: str, args: list[str], *, submission_id: str, metadata: dict[str, str]) -> str:
    """Submit ``python -m module args`` as a Ray Job with this process's settings."""
    env = settings.to_env()
    env["RAY_TRAIN_ENABLE_STATE_TRACKING"] = "1"
    if ray.is_initialized():
        # The job supervisor resolves RAY_ADDRESS through the node's temp dir, which names
        # whichever cluster started last on that machine; name ours explicitly.
        env["FATHOM_RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    entrypoint = " ".join([sys.executable, "-m", module, *args])
    try:
        return jobs_client(settings).submit_job(
            entrypoint=entrypoint,
            submission_id=submission_id,
            runtime_env={"env_vars": env},
            metadata=metadata,
            entrypoint_num_cpus=0,
        )
    except LaunchError:
        raise
    except Exception as e:
        raise LaunchError(f"could not submit {module}: {e}") from e


def launch_run(
    session: Session,
    settings: Settings,
    module: str,
    args: list[str],
    *,
    submission_id: str,
    metadata: dict[str, str],
    failed: Callable[[Session, str], Any],
) -> str:
    """Submit a training run's Ray Job for both kinds of record; returns the Ray Job id.

    The caller has committed the record (sessions keep their attributes after commit), so no
    transaction or connection is held across the Jobs API call. When submission fails,
    ``failed(session, reason)`` ends the record with its lifecycle's conditional update, in its
    own committed transaction, and the ``LaunchError`` propagates.
    """
    session.commit()
    try:
        return submit_module(settings, module, args, submission_id=submission_id, metadata=metadata)
    except LaunchError as e:
        session.rollback()
        failed(session, f"could not start training: {e}")
        session.commit()
        raise


def stop_job(settings: Settings, ray_job_id: str) -> None:
    try:
        jobs_client(settings).stop_job(ray_job_id)
    except Exception as e:
        log.warning("stopping Ray job %s: %s", ray_job_id, e)


def current_submission_id(settings: Settings) -> str | None:
    """The Ray Job submission id of this driver, if it runs as a Ray Job (``ray job submit``).

    The job supervisor hands it to the entrypoint in the job config's metadata; the Jobs API
    is asked only when that is missing.
    """
    import json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    try:
        config = json.loads(os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR) or "{}")
        submission_id = (config.get("metadata") or {}).get("job_submission_id")
        if submission_id:
            return str(submission_id)
    except (ValueError, AttributeError):
        pass
    try:
        driver_job_id = ray.get_runtime_context().get_job_id()
        for info in jobs_client(settings).list_jobs():
            if info.job_id == driver_job_id:
                return info.submission_id
    except Exception as e:
        log.warning("could not look up this driver's Ray Job: %s", e)
    return None
