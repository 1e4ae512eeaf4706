"""Detector replicas: many models per replica, windows batched across files and requests.

Callable from HTTP (through the ingress and dispatcher) and from any Ray app; the model is
named by the multiplexed model id (its UUID, or a registry reference ``name@3`` /
``name@production`` when one organization holds the name), audio by bytes, samples or a blob key::

    handle = serve.get_deployment_handle("Detector", app_name="fathom")
    result = await handle.options(multiplexed_model_id=model_id).detect.remote(audio_bytes, config={"threshold": 0.5})
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ray import serve

from cluster import registry
from cluster.db import open_session
from cluster.tables import DetectorModel
from data_pipelines.views import store_views
from data_pipelines.features import compute_features
from schemas.inference import InferenceConfig
from serve_app.deployments.replica import LoadedModel, ModelReplica, ModelUnavailable
from serve_app.metrics import model_call
from train_jobs.detection import chunk_probs, detection_dict, detections_from_chunks, file_activations, file_context, pooled_windows, window_context
from train_jobs.models.detector import load_checkpoint

log = logging.getLogger("fathom.detector")

MAX_MODELS_PER_REPLICA = 8
DEFAULT_MAX_BATCH_SIZE = 16  # requests (files) per context pass; their windows are concatenated
CONCURRENT_BATCHES = 2  # one batch computes while the next fills; on CPU both use cores
DEFAULT_BATCH_WAIT_S = 0.01
FULL_PASS_WINDOWS = 64  # a file with this many windows (16 s) fills a context pass alone: it waits for no other

__all__ = ["Detector", "ModelUnavailable"]



def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


@serve.deployment(
    name="Detector",
    max_ongoing_requests=64,
    autoscaling_config={
        "min_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 32,
        "upscale_delay_s": 10,
        "downscale_delay_s": 120,
    },
    user_config={"max_batch_size": DEFAULT_MAX_BATCH_SIZE, "batch_wait_timeout_s": DEFAULT_BATCH_WAIT_S},
    ray_actor_options={"num_cpus": 1},
)
class Detector(ModelReplica):
    default_max_batch_size = DEFAULT_MAX_BATCH_SIZE
    default_batch_wait_s = DEFAULT_BATCH_WAIT_S

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def get_model(self, model_id: str) -> LoadedModel:
        return await self.load_model(model_id)

    def is_target(self, ref: str) -> bool:
        return _is_uuid(ref)  # a model UUID names itself

    def target(self, ref: str) -> str:
        """A registry reference (``name@3``, ``name@production``) as the v1 model UUID it names now."""
        with open_session(self.settings.database_url) as s:
            try:
                return registry.detector_target(s, ref)
            except registry.RegistryError as e:
                raise ModelUnavailable(str(e)) from None

    def load(self, model_id: str) -> LoadedModel:
        with open_session(self.settings.database_url) as s:
            row = s.get(DetectorModel, model_id)
            if row is None or row.archived_at is not None:
                raise ModelUnavailable(f"detector model {model_id} not found or archived")
            key = row.checkpoint_key
        model, meta = load_checkpoint(self.blobs.get_bytes(key), map_location="cpu")
        return LoadedModel(model.to(self.device).eval(), meta)

    async def detect(
        self,
        audio: bytes | np.ndarray | None = None,
        *,
        audio_key: str | None = None,
        config: dict[str, Any] | None = None,
        sweep: Sequence[float] = (),
        views: bool = False,
    ) -> dict[str, Any]:
        """Detections for one file: encoded bytes (any supported format), 16 kHz mono float32 samples, or a blob key.

        Returns ``{"duration_ms", "detections": [{artifact_type, start_ms, end_ms, confidence}]}``
        through ``train_jobs.detection``, the path training evaluation grades; with ``sweep``
        thresholds also ``"sweep": {"0.3": [detections at threshold 0.3], ...}`` from the same
        forward pass (evaluations). With ``views`` (and ``audio_key``) the file's waveform peaks and
        spectrogram are stored beside it from the signal and features already computed (the review
        page draws them). Raises ``AudioDecodeError`` for unreadable audio and
        ``ModelUnavailable`` for a bad model id.
        """
        cfg = InferenceConfig.model_validate(config or {})
        _, loaded = await self.requested_model()
        with model_call("detector") as call:
            wave, duration_ms = await self.read_audio(audio, audio_key)
            call.audio_s = duration_ms / 1000
            meta = loaded.meta
            features = await asyncio.to_thread(compute_features, wave, version=meta.feature_version)
            if views and audio_key:
                await asyncio.to_thread(store_views, self.blobs, audio_key, wave, features)
            chunks = await self._forward(loaded, features)

        def decoded(c: InferenceConfig) -> list[dict[str, Any]]:
            events = detections_from_chunks(chunks, features.shape[0], meta.window, meta.artifact_types, c, duration_ms)
            return [detection_dict(e) for e in events]

        out: dict[str, Any] = {"duration_ms": duration_ms, "detections": decoded(cfg)}
        if sweep:
            out["sweep"] = {f"{t:.1f}": decoded(cfg.model_copy(update={"threshold": float(t)})) for t in sweep}
        return out

    async def _forward(self, loaded: LoadedModel, features: np.ndarray) -> np.ndarray:
        """Chunk probabilities of one file (``train_jobs.detection``): the local path over the file here,
        the context path batched with other short files' windows, or alone when the file fills a pass."""
        model, spec = loaded.model, loaded.meta.window
        acts = await asyncio.to_thread(file_activations, model, features, spec, device=self.device)
        if self.batching and acts.n_windows < FULL_PASS_WINDOWS:
            context = await self._batched(await asyncio.to_thread(pooled_windows, model, acts, spec))
        else:
            context = await asyncio.to_thread(file_context, model, acts, spec)
        return chunk_probs(model, acts, context, spec)

    @serve.batch(
        max_batch_size=DEFAULT_MAX_BATCH_SIZE, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S, max_concurrent_batches=CONCURRENT_BATCHES
    )
    async def _batched(self, items: list[torch.Tensor]) -> list[torch.Tensor]:
        """One context pass over the pooled windows of every file in the batch (Serve splits batches by model)."""
        _, loaded = await self.requested_model()
        context = await asyncio.to_thread(window_context, loaded.model, torch.cat(items), loaded.meta.window)
        return list(torch.split(context, [w.shape[0] for w in items]))
