"""Speech-to-text replicas: several models per replica, utterances batched across requests.

Models are multiplexed by reference: a base model by name (``general``, ``medical``, ...),
a custom model as the REST API names it (``custom_model_7``, ``custom_model_7@3``,
``custom_model_7@production``: resolved per request through the registry) or by its
checkpoint's blob key. Loaded models are cached by checkpoint (a new key per training run, so
a replica never serves a stale model). The multiplexed model id is the only way to name one.
Callable from HTTP (``POST /api/v3/stt``) and from any Ray app::

    handle = serve.get_deployment_handle("Transcriber", app_name="fathom")
    result = await handle.options(multiplexed_model_id="medical").transcribe.remote(
        audio_bytes, boost_terms=["stent"])
    # {"text": ..., "words": [{"word", "start", "end", "confidence"}], "duration": seconds}
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from ray import serve

from cluster import registry
from cluster.blob_keys import CUSTOM_MODELS_PREFIX
from cluster.db import open_session
from schemas.stt import BASE_MODELS
from serve_app.deployments.replica import LoadedModel, ModelReplica, ModelUnavailable
from serve_app.metrics import model_call
from train_jobs.base_models import load_base_model
from train_jobs.models.stt import load_stt_checkpoint
from train_jobs.stt_decoding import transcribe_batch

log = logging.getLogger("fathom.transcriber")

MAX_MODELS_PER_REPLICA = 6
DEFAULT_MAX_BATCH_SIZE = 8  # utterances per forward pass (long files are split into segments first)
CONCURRENT_BATCHES = 2  # one batch computes while the next fills; on CPU both use cores
DEFAULT_BATCH_WAIT_S = 0.02

__all__ = ["ModelUnavailable", "Transcriber"]



@serve.deployment(
    name="Transcriber",
    max_ongoing_requests=32,
    autoscaling_config={
        "min_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 16,
        "upscale_delay_s": 10,
        "downscale_delay_s": 120,
    },
    user_config={"max_batch_size": DEFAULT_MAX_BATCH_SIZE, "batch_wait_timeout_s": DEFAULT_BATCH_WAIT_S},
    ray_actor_options={"num_cpus": 1},
)
class Transcriber(ModelReplica):
    default_max_batch_size = DEFAULT_MAX_BATCH_SIZE
    default_batch_wait_s = DEFAULT_BATCH_WAIT_S

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def get_model(self, ref: str) -> LoadedModel:
        return await self.load_model(ref)

    def is_target(self, ref: str) -> bool:
        return ref in BASE_MODELS or ref.startswith(CUSTOM_MODELS_PREFIX)

    def target(self, ref: str) -> str:
        """What a multiplexed model id names now: a base model, a checkpoint key, or a
        ``custom_model_{id}[@3|@alias]`` reference resolved through the registry (per request,
        so a handle follows an alias move at its next request)."""
        with open_session(self.settings.database_url) as s:
            try:
                key = registry.stt_checkpoint(s, ref)
            except registry.RegistryError as e:
                raise ModelUnavailable(str(e)) from None
        return ref if key is None else key

    def load(self, ref: str) -> LoadedModel:
        if ref in BASE_MODELS:
            model, meta = load_base_model(ref, map_location=str(self.device))
        elif ref.startswith(CUSTOM_MODELS_PREFIX) and ".." not in ref:
            try:
                data = self.blobs.get_bytes(ref)
            except Exception as e:
                raise ModelUnavailable(f"custom model checkpoint {ref} cannot be read: {e}") from e
            model, meta = load_stt_checkpoint(data, map_location=self.device)
        else:
            raise ModelUnavailable(
                f"unknown model reference {ref!r}; use {', '.join(BASE_MODELS)}, custom_model_{{id}}[@version|@alias] or a checkpoint key"
            )
        return LoadedModel(model.to(self.device).eval(), meta)

    async def transcribe(
        self, audio: bytes | np.ndarray | None = None, *, audio_key: str | None = None, boost_terms: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Transcribe one file: encoded bytes (any supported format), 16 kHz mono float32 samples, or a blob key.

        Raises ``AudioDecodeError`` for unreadable audio and ``ModelUnavailable`` for a bad reference.
        """
        ref, loaded = await self.requested_model()
        with model_call("stt", ref if ref in BASE_MODELS else "custom") as call:
            wave, duration = await self.read_audio(audio, audio_key)
            call.audio_s = duration / 1000
            terms = tuple(str(t) for t in boost_terms)
            if self.batching:
                return await self._batched((wave, terms))
            result = await asyncio.to_thread(transcribe_batch, loaded.model, loaded.meta, [wave], item_terms=[terms])
            return result[0].to_dict()

    @serve.batch(
        max_batch_size=DEFAULT_MAX_BATCH_SIZE, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S, max_concurrent_batches=CONCURRENT_BATCHES
    )
    async def _batched(self, items: list[tuple[np.ndarray, tuple[str, ...]]]) -> list[dict[str, Any]]:
        """One batched forward pass over every request's segments (Serve splits batches by model), then per-request decoding."""
        _, loaded = await self.requested_model()
        results = await asyncio.to_thread(
            transcribe_batch, loaded.model, loaded.meta, [w for w, _ in items], item_terms=[t for _, t in items]
        )
        return [r.to_dict() for r in results]
