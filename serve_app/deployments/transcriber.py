"""Speech-to-text replicas: several models per replica, utterances batched across requests.

Models are multiplexed by reference: a base model by name (``general``, ``medical``, ...)
or a custom model by its checkpoint's blob key (a new key per training run, so a replica
never serves a stale model). Callable from HTTP (``POST /api/v3/stt``) and from any Ray app::

    handle = serve.get_deployment_handle("Transcriber", app_name="fathom")
    result = await handle.options(multiplexed_model_id="medical").transcribe.remote(
        audio_bytes, model="medical", boost_terms=["stent"])
    # {"text": ..., "words": [{"word", "start", "end", "confidence"}], "duration": seconds}
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray import serve

from cluster.blob_keys import CUSTOM_MODELS_PREFIX
from cluster.blobs import make_blob_store
from cluster.db import init_schema
from data_pipelines.audio import decode_audio
from schemas.stt import BASE_MODELS
from train_jobs.base_models import load_base_model
from train_jobs.models.stt import SttMeta, load_stt_checkpoint
from train_jobs.stt_decoding import transcribe_batch

log = logging.getLogger("fathom.transcriber")

MAX_MODELS_PER_REPLICA = 6
DEFAULT_MAX_BATCH_SIZE = 8  # utterances per forward pass (long files are split into segments first)
CONCURRENT_BATCHES = 2  # one batch computes while the next fills; on CPU both use cores
DEFAULT_BATCH_WAIT_S = 0.02


class ModelUnavailable(LookupError):
    """The reference names no base model and no custom checkpoint."""


@dataclass
class _Loaded:
    model: torch.nn.Module
    meta: SttMeta

    def __del__(self) -> None:  # eviction from the multiplex cache: free accelerator memory
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


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
class Transcriber:
    def __init__(self, args: Any):
        self.settings = args.build_settings()
        instance = init_schema(self.settings.database_url)
        self.blobs = make_blob_store(self.settings, secret=instance.signing_secret.encode())
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.batching = True

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``user_config``: max_batch_size (1 disables batching), batch_wait_timeout_s."""
        size = int(user_config.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE))
        self.batching = size > 1
        self._decode_batch.set_max_batch_size(max(size, 1))
        self._decode_batch.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", DEFAULT_BATCH_WAIT_S)))

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def get_model(self, ref: str) -> _Loaded:
        return await asyncio.to_thread(self._load, ref)

    def _load(self, ref: str) -> _Loaded:
        if ref in BASE_MODELS:
            model, meta = load_base_model(ref, map_location=str(self.device))
        elif ref.startswith(CUSTOM_MODELS_PREFIX) and ".." not in ref:
            try:
                data = self.blobs.get_bytes(ref)
            except Exception as e:
                raise ModelUnavailable(f"custom model checkpoint {ref} cannot be read: {e}") from e
            model, meta = load_stt_checkpoint(data, map_location=self.device)
        else:
            raise ModelUnavailable(f"unknown model reference {ref!r}; use {', '.join(BASE_MODELS)} or a checkpoint key")
        return _Loaded(model.to(self.device).eval(), meta)

    async def transcribe(
        self, audio: bytes | np.ndarray, model: str | None = None, boost_terms: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Transcribe one file: encoded bytes (any supported format) or 16 kHz mono float32 samples.

        Raises ``AudioDecodeError`` for unreadable audio and ``ModelUnavailable`` for a bad reference.
        """
        ref = model or serve.get_multiplexed_model_id()
        if not ref:
            raise ModelUnavailable("no model given (argument or multiplexed_model_id)")
        loaded = await self.get_model(ref)  # a bad reference fails this request alone, never a batch
        wave = await asyncio.to_thread(self._waveform, audio)
        terms = tuple(str(t) for t in boost_terms)
        if self.batching:
            return await self._decode_batch((ref, wave, terms))
        result = await asyncio.to_thread(transcribe_batch, loaded.model, loaded.meta, [wave], item_terms=[terms])
        return result[0].to_dict()

    def _waveform(self, audio: bytes | np.ndarray) -> np.ndarray:
        if isinstance(audio, (bytes, bytearray, memoryview)):
            return decode_audio(bytes(audio), max_seconds=self.settings.max_audio_seconds).waveform
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    @serve.batch(
        max_batch_size=DEFAULT_MAX_BATCH_SIZE, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S, max_concurrent_batches=CONCURRENT_BATCHES
    )
    async def _decode_batch(self, items: list[tuple[str, np.ndarray, tuple[str, ...]]]) -> list[dict[str, Any]]:
        """One batched forward pass per model over every request's segments, then per-request decoding."""
        out: list[dict[str, Any] | None] = [None] * len(items)
        by_model: dict[str, list[int]] = {}
        for i, (ref, _, _) in enumerate(items):
            by_model.setdefault(ref, []).append(i)
        for ref, idx in by_model.items():
            loaded = await self.get_model(ref)
            results = await asyncio.to_thread(
                transcribe_batch,
                loaded.model,
                loaded.meta,
                [items[i][1] for i in idx],
                item_terms=[items[i][2] for i in idx],
            )
            for i, r in zip(idx, results):
                out[i] = r.to_dict()
        return out  # type: ignore[return-value]
