"""Detector replicas: many models per replica, windows batched across files and requests.

Callable from HTTP (through the ingress and dispatcher) and from any Ray app::

    handle = serve.get_deployment_handle("Detector", app_name="fathom")
    result = await handle.detect.remote(audio_bytes, model_id=model_id, config={"threshold": 0.5})
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray import serve

from cluster.blobs import make_blob_store
from cluster.db import init_schema, open_session
from cluster.tables import DetectorModel
from data_pipelines.audio import decode_audio
from data_pipelines.events import postprocess
from data_pipelines.features import FRAME_HOP_MS, compute_features
from schemas.inference import InferenceConfig
from train_jobs.models.detector import load_checkpoint
from train_jobs.windows import merge_windows, split_windows

log = logging.getLogger("fathom.detector")

MAX_MODELS_PER_REPLICA = 8
DEFAULT_MAX_BATCH_SIZE = 16  # requests (files) per forward pass; their windows are concatenated
CONCURRENT_BATCHES = 2  # one batch computes while the next fills; on CPU both use cores
DEFAULT_BATCH_WAIT_S = 0.01
FORWARD_CHUNK_WINDOWS = 512  # windows per tensor, bounds activation memory on long files


class ModelUnavailable(LookupError):
    """The model id is unknown, archived or its checkpoint is missing."""


@dataclass
class _Loaded:
    model: torch.nn.Module
    artifact_types: list[str]
    window: Any
    feature_version: int

    def __del__(self) -> None:  # eviction from the multiplex cache: free accelerator memory
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


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
class Detector:
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
        self._forward_batch.set_max_batch_size(max(size, 1))
        self._forward_batch.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", DEFAULT_BATCH_WAIT_S)))

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def get_model(self, model_id: str) -> _Loaded:
        return await asyncio.to_thread(self._load, model_id)

    def _load(self, model_id: str) -> _Loaded:
        with open_session(self.settings.database_url) as s:
            row = s.get(DetectorModel, model_id)
            if row is None or row.archived_at is not None:
                raise ModelUnavailable(f"detector model {model_id} not found or archived")
            key = row.checkpoint_key
        model, meta = load_checkpoint(self.blobs.get_bytes(key), map_location="cpu")
        model.to(self.device).eval()
        return _Loaded(model, list(meta.artifact_types), meta.window, meta.feature_version)

    async def detect(
        self, audio: bytes | np.ndarray, model_id: str | None = None, config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Detections for one file: encoded bytes (any supported format) or 16 kHz mono float32 samples.

        Returns ``{"duration_ms", "detections": [{artifact_type, start_ms, end_ms, confidence}]}``.
        Raises ``AudioDecodeError`` for unreadable audio and ``ModelUnavailable`` for a bad id.
        """
        model_id = model_id or serve.get_multiplexed_model_id()
        if not model_id:
            raise ModelUnavailable("no model_id given (argument or multiplexed_model_id)")
        cfg = InferenceConfig.model_validate(config or {})
        loaded = await self.get_model(model_id)
        features, duration_ms = await asyncio.to_thread(self._features, audio, loaded.feature_version)
        windows = split_windows(features, loaded.window)
        if self.batching:
            chunk_probs = await self._forward_batch((model_id, windows))
        else:
            chunk_probs = await asyncio.to_thread(self._forward, loaded, windows)
        probs = merge_windows(chunk_probs, features.shape[0], loaded.window)
        events = postprocess(
            probs,
            loaded.artifact_types,
            threshold=cfg.threshold,
            merge_window_ms=cfg.merge_window_ms,
            min_duration_ms=cfg.min_duration_ms,
            hop_ms=FRAME_HOP_MS,
        )
        detections = [
            {"artifact_type": e.artifact_type, "start_ms": int(e.start_ms), "end_ms": int(min(e.end_ms, duration_ms)), "confidence": round(float(e.confidence), 4)}
            for e in events
        ]
        return {"duration_ms": duration_ms, "detections": detections}

    def _features(self, audio: bytes | np.ndarray, feature_version: int) -> tuple[np.ndarray, int]:
        if isinstance(audio, (bytes, bytearray, memoryview)):
            decoded = decode_audio(bytes(audio), max_seconds=self.settings.max_audio_seconds)
            wave, duration_ms = decoded.waveform, decoded.duration_ms
        else:
            wave = np.asarray(audio, dtype=np.float32).reshape(-1)
            duration_ms = int(round(len(wave) * 1000 / 16_000))
        return compute_features(wave, version=feature_version), duration_ms

    @serve.batch(
        max_batch_size=DEFAULT_MAX_BATCH_SIZE, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S, max_concurrent_batches=CONCURRENT_BATCHES
    )
    async def _forward_batch(self, items: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        """One forward pass per model over the windows of every file in the batch."""
        out: list[np.ndarray | None] = [None] * len(items)
        by_model: dict[str, list[int]] = {}
        for i, (model_id, _) in enumerate(items):
            by_model.setdefault(model_id, []).append(i)
        for model_id, idx in by_model.items():
            loaded = await self.get_model(model_id)
            stacked = np.concatenate([items[i][1] for i in idx], axis=0)
            probs = await asyncio.to_thread(self._forward, loaded, stacked)
            start = 0
            for i in idx:
                n = items[i][1].shape[0]
                out[i] = probs[start : start + n]
                start += n
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def _forward(self, loaded: _Loaded, windows: np.ndarray) -> np.ndarray:
        parts = []
        for start in range(0, windows.shape[0], FORWARD_CHUNK_WINDOWS):
            x = torch.from_numpy(np.ascontiguousarray(windows[start : start + FORWARD_CHUNK_WINDOWS])).to(self.device)
            logits = loaded.model(x)
            parts.append(torch.sigmoid(self._chunk_part(logits, loaded.window)).float().cpu().numpy())
        return np.concatenate(parts, axis=0)

    @staticmethod
    def _chunk_part(logits: torch.Tensor, window: Any) -> torch.Tensor:
        """The model sees context on both sides; only the chunk's own frames are predictions."""
        c = window.context_frames
        return logits[:, c : c + window.chunk_frames]
