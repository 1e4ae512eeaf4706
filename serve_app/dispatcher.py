"""The dispatcher: moves durable queued work from the database onto Ray.

One replica runs these loops:
- inference files: claim queued files (leased), call the Detector deployment, record results;
- evaluations: claim one at a time (leased) and run it on the Detector or Transcriber
  deployment (``serve_app.evaluator``);
- webhooks: claim due deliveries (leased) and send them (``serve_app.webhook_delivery``);
- dataset audio: claim confirmed files in groups and run one Ray Data preprocessing run per group;
- training jobs and custom speech models: reconcile records with their Ray Jobs (a driver that
  died leaves nothing ``running``); uploads never confirmed expire (``cluster.pending_uploads``).

Everything it knows lives in the database, so it can die and restart at any time: leases
expire and the work is claimed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from cluster import evaluations, queue
from cluster.blob_signing import BlobError
from cluster.blobs import make_blob_store
from cluster.db import init_schema, open_session
from cluster.inference import finish_file, model_refusal, record_job_failure
from cluster.custom_models import reconcile_stt_jobs
from cluster.pending_uploads import expire_pending_uploads
from cluster.training import reconcile_training_jobs
from cluster.tables import DetectorModel, InferenceFile, InferenceJob
from data_pipelines.audio import AudioDecodeError
from serve_app.deployments.replica import ModelUnavailable
from serve_app import metrics
from serve_app.evaluator import EvaluationRunner
from serve_app.webhook_delivery import WebhookSender

log = logging.getLogger("fathom.dispatcher")

RECONCILE_EVERY_S = 5.0
WORK_KINDS = ("inference", "dataset_audio", "evaluation")  # what ``Dispatcher.wake`` can name
# Failures of a worker or a dependency, not of the file: the file is requeued.
INTERRUPTIONS = (RayActorError, BackPressureError, BlobError, ConnectionError, asyncio.TimeoutError)


@ray.remote(num_cpus=0, max_retries=0)
def _preprocess_group(settings, file_ids: list[str]) -> dict[str, str]:
    """Runs one Ray Data pipeline over a group of files; ``num_cpus=0`` so Data tasks get the CPUs."""
    from data_pipelines.preprocess import preprocess_audio_files

    return preprocess_audio_files(settings, file_ids)


class IdlePoll:
    """When a loop looks for work again: ``busy_s`` after it found some, doubling up to ``idle_s``
    while it finds none, and at once when woken.

    Most work is announced (``Dispatcher.wake``), so an idle platform need not ask the database
    several times a second; the poll stays for what is never announced (expired leases,
    requeued work, webhook deliveries falling due) and for a wake that was lost.
    """

    def __init__(self, busy_s: float, idle_s: float):
        self.busy_s, self.idle_s = busy_s, max(busy_s, idle_s)
        self.interval = busy_s
        self.event = asyncio.Event()

    def wake(self) -> None:
        self.event.set()

    def found(self) -> None:
        """The last claim found work: the next wait is short again."""
        self.interval = self.busy_s

    async def wait(self, found: bool) -> None:
        """Sleeps before the next claim; ``found``: whether the last claim found work. A wake since
        the last wait (during the claim, say) returns at once: the next claim sees its work."""
        self.interval = self.busy_s if found else min(self.idle_s, self.interval * 2)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), self.interval)
        if self.event.is_set():
            self.event.clear()
            self.interval = self.busy_s


@serve.deployment(name="Dispatcher", num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=16)
class Dispatcher:
    async def __init__(self, args: Any, detector: DeploymentHandle, transcriber: DeploymentHandle):
        self.settings = args.build_settings()
        instance = init_schema(self.settings.database_url)
        self.blobs = make_blob_store(self.settings, secret=instance.signing_secret.encode())
        self.detector = detector
        self.evaluator = EvaluationRunner(self.settings, detector, transcriber, INTERRUPTIONS)
        self.webhooks = WebhookSender(self.settings)
        self.in_flight: set[str] = set()
        self.slots = asyncio.Semaphore(self.settings.dispatch_max_in_flight)
        self.preprocessing: asyncio.Task | None = None
        self.gauges = metrics.Gauges()
        s = self.settings
        self.polls = {
            "inference": IdlePoll(s.dispatch_poll_s, s.dispatch_idle_poll_s),
            # Never longer than the reconciliation period, which runs on the same loop.
            "dataset_audio": IdlePoll(max(s.dispatch_poll_s, 0.5), min(s.dispatch_idle_poll_s, RECONCILE_EVERY_S)),
            "evaluation": IdlePoll(max(s.dispatch_poll_s, 0.5), s.dispatch_idle_poll_s),
            "webhooks": IdlePoll(max(s.dispatch_poll_s, 0.5), s.dispatch_idle_poll_s),
        }
        self.wakes = dict.fromkeys(WORK_KINDS, 0)
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self._inference_loop()),
            loop.create_task(self._maintenance_loop()),
            loop.create_task(self._evaluation_loop()),
            loop.create_task(self._webhook_loop()),
            loop.create_task(self._gauge_loop()),
        ]

    def check_health(self) -> None:
        for t in self.tasks:
            if t.done():
                raise RuntimeError(f"dispatcher loop stopped: {t.exception() if not t.cancelled() else 'cancelled'}")

    async def status(self) -> dict[str, Any]:
        return {
            "in_flight": len(self.in_flight),
            "preprocessing": self.preprocessing is not None and not self.preprocessing.done(),
            "wakes": dict(self.wakes),
        }

    async def wake(self, work: str) -> None:
        """Work of kind ``work`` (one of WORK_KINDS) was queued: the Ingress calls this after a
        confirm or a new evaluation, and the loop claims it now instead of at its next poll."""
        if work not in WORK_KINDS:
            raise ValueError(f"work must be one of {WORK_KINDS}, got {work!r}")
        self.wakes[work] += 1
        self.polls[work].wake()

    # --- inference --------------------------------------------------------------------------

    async def _inference_loop(self) -> None:
        s, poll = self.settings, self.polls["inference"]
        while True:
            try:
                free = s.dispatch_max_in_flight - len(self.in_flight)
                claimed = []
                if free > 0:
                    claimed = await asyncio.to_thread(
                        queue.claim_inference_files, s.database_url, limit=free, lease_s=s.lease_s, max_attempts=s.max_attempts
                    )
                for file_id, job_id in claimed:
                    self.in_flight.add(file_id)
                    asyncio.get_running_loop().create_task(self._run_file(file_id))
                if claimed:
                    poll.found()
                else:  # while every slot is taken, slots free up at the busy pace
                    await poll.wait(found=free <= 0)
            except Exception:
                log.exception("inference loop iteration failed; retrying")
                await asyncio.sleep(1.0)

    async def _run_file(self, file_id: str) -> None:
        url = self.settings.database_url
        job_id = None
        try:
            with open_session(url) as session:
                row = session.get(InferenceFile, file_id)
                job = session.get(InferenceJob, row.inference_job_id) if row else None
                if row is None or job is None:
                    return
                key, job_id, model_id, config = row.blob_key, job.id, job.model_id, dict(job.config)
                job_error = job.error_message if job.status == "failed" else None
                refusal = None if job_error else model_refusal(session.get(DetectorModel, model_id))
            if job_error:  # claimed just as its job failed
                await asyncio.to_thread(finish_file, url, file_id, error=job_error)
                return
            if refusal:  # the model became unusable after the job was created: a job-level cause
                await self._fail_job(job_id, file_id, refusal)
                return
            # The Detector reads the file from the blob store itself: only the key travels.
            result = await self.detector.options(multiplexed_model_id=model_id).detect.remote(
                audio_key=key, config=config, views=True
            )
            await asyncio.to_thread(
                finish_file, url, file_id, detections=result["detections"], duration_ms=result["duration_ms"]
            )
        except Exception as e:
            cause = e.cause if isinstance(e, RayTaskError) and getattr(e, "cause", None) else e
            if isinstance(cause, INTERRUPTIONS):
                # The worker or a dependency failed, not the file: put it back for another attempt.
                log.warning("inference of %s interrupted (%s); requeueing", file_id, type(cause).__name__)
                await asyncio.to_thread(queue.release_inference_file, url, file_id)
            elif isinstance(cause, ModelUnavailable) and job_id:
                await self._fail_job(job_id, file_id, f"Model is unavailable: {cause}")
            else:
                message = str(cause) if isinstance(cause, AudioDecodeError) else f"{type(cause).__name__}: {cause}"
                await asyncio.to_thread(finish_file, url, file_id, error=message[:2000])
        finally:
            self.in_flight.discard(file_id)

    async def _fail_job(self, job_id: str, file_id: str, message: str) -> None:
        """Fail the job (and with it this claimed file); a job that already ended fails just the file."""
        url = self.settings.database_url
        if not await asyncio.to_thread(record_job_failure, url, job_id, message):
            await asyncio.to_thread(finish_file, url, file_id, error=message)

    # --- evaluations ---------------------------------------------------------------------------

    async def _evaluation_loop(self) -> None:
        s, poll = self.settings, self.polls["evaluation"]
        while True:
            claimed = None
            try:
                claimed = await asyncio.to_thread(
                    evaluations.claim, s.database_url, lease_s=self.evaluator.lease_s, max_attempts=s.max_attempts
                )
                if claimed:
                    await self.evaluator.run(*claimed)
                    continue
            except Exception:
                log.exception("evaluation loop iteration failed; retrying")
            await poll.wait(found=bool(claimed))

    # --- webhooks --------------------------------------------------------------------------------

    async def _webhook_loop(self) -> None:
        poll = self.polls["webhooks"]
        while True:
            try:
                if await self.webhooks.run_due():
                    poll.found()
                    continue
            except Exception:
                log.exception("webhook loop iteration failed; retrying")
            await poll.wait(found=False)

    # --- dataset preprocessing and training reconciliation -----------------------------------

    async def _maintenance_loop(self) -> None:
        s, poll = self.settings, self.polls["dataset_audio"]
        loop = asyncio.get_running_loop()
        last_reconcile = -RECONCILE_EVERY_S
        while True:
            ids = None
            try:
                if self.preprocessing is None or self.preprocessing.done():
                    ids = await asyncio.to_thread(
                        queue.claim_dataset_audio,
                        s.database_url,
                        limit=s.preprocess_max_files,
                        lease_s=max(s.lease_s, 600.0),
                        max_attempts=s.max_attempts,
                    )
                    if ids:
                        self.preprocessing = loop.create_task(self._preprocess(ids))
                if loop.time() - last_reconcile >= RECONCILE_EVERY_S:
                    last_reconcile = loop.time()
                    await asyncio.to_thread(self._read_gauges)
                    await asyncio.to_thread(self._expire_uploads)
                    await asyncio.to_thread(reconcile_training_jobs, s)
                    await asyncio.to_thread(reconcile_stt_jobs, s)
            except Exception:
                log.exception("maintenance loop iteration failed; retrying")
            await poll.wait(found=bool(ids))

    def _read_gauges(self) -> None:
        url = self.settings.database_url
        self.gauges.update(queue.depths(url), queue.training_counts(url))

    async def _gauge_loop(self) -> None:
        """Sets the gauges again every second: Ray forgets a gauge that is not refreshed."""
        while True:
            try:
                self.gauges.publish()
            except Exception:
                log.exception("publishing gauges failed; retrying")
            await asyncio.sleep(metrics.GAUGE_REPUBLISH_S)

    def _expire_uploads(self) -> None:
        for key in expire_pending_uploads(self.settings.database_url, self.settings):
            try:
                self.blobs.delete(key)
            except BlobError:
                log.warning("could not delete the object of an expired upload (%s); it stays in storage", key)

    async def _preprocess(self, ids: list[str]) -> None:
        try:
            await _preprocess_group.remote(self.settings, ids)
        except Exception:
            log.exception("preprocessing run over %d files failed; releasing them for another attempt", len(ids))
            await asyncio.to_thread(queue.release_dataset_audio, self.settings.database_url, ids)
        finally:
            self.polls["dataset_audio"].wake()  # the next group, if one is waiting, need not wait for the poll
