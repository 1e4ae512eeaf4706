"""What every model replica shares: settings, blob store, device, batching knobs, multiplexed loading, audio input.

A replica learns which model a request wants only from its multiplexed model id
(``handle.options(multiplexed_model_id=...)``, or the ``serve_multiplexed_model_id`` HTTP
header). Serve splits every batch by that id, so a batch holds one model's requests and the
batch handler reads the id back with ``serve.get_multiplexed_model_id()``.

Audio arrives as a blob key (the Dispatcher passes keys, so large files never travel through
another actor), as encoded bytes (a v3 upload) or as 16 kHz mono samples (another Ray app).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from ray import serve

from cluster.blobs import make_blob_store
from cluster.db import init_schema
from data_pipelines.audio import decode_audio, duration_ms


class ModelUnavailable(LookupError):
    """The request names no model, or one that is unknown, archived or whose checkpoint is missing."""


@dataclass
class LoadedModel:
    """A model (eval mode, on the replica's device) and its checkpoint's meta, in the multiplex cache.

    Eviction only drops the reference: ``__del__`` frees the accelerator memory.
    """

    model: torch.nn.Module
    meta: Any

    def __del__(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class ModelReplica:
    """Base of the Detector and Transcriber deployments.

    A subclass declares ``get_model`` under ``@serve.multiplexed`` (delegating to
    ``load_model``), its batch handler as ``_batched`` under ``@serve.batch``, implements
    ``load(ref)``, and sets the batching defaults below; ``is_target`` / ``target`` resolve
    references that are not cache keys (registry names).
    """

    default_max_batch_size: ClassVar[int]
    default_batch_wait_s: ClassVar[float]

    def __init__(self, args: Any):
        self.settings = args.build_settings()
        instance = init_schema(self.settings.database_url)
        self.blobs = make_blob_store(self.settings, secret=instance.signing_secret.encode())
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.batching = True

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``user_config``: max_batch_size (1 disables batching), batch_wait_timeout_s."""
        size = int(user_config.get("max_batch_size", self.default_max_batch_size))
        self.batching = size > 1
        self._batched.set_max_batch_size(max(size, 1))
        self._batched.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", self.default_batch_wait_s)))

    def load(self, ref: str) -> LoadedModel:
        raise NotImplementedError

    async def load_model(self, ref: str) -> LoadedModel:
        return await asyncio.to_thread(self.load, ref)

    def is_target(self, ref: str) -> bool:
        """Whether ``ref`` already names what models are cached by (no lookup needed)."""
        return True

    def target(self, ref: str) -> str:
        """What a reference names now (a subclass resolves registry references; blocking, run in a thread)."""
        return ref

    async def requested_model(self) -> tuple[str, LoadedModel]:
        """The request's model, loaded (and cached) by what its multiplexed id names now; a bad id fails this request alone.

        Resolved at every request, so a handle naming an alias follows its moves at the next call.
        """
        ref = serve.get_multiplexed_model_id()
        if not ref:
            raise ModelUnavailable("no model named: call through handle.options(multiplexed_model_id=...)")
        key = ref if self.is_target(ref) else await asyncio.to_thread(self.target, ref)
        return key, await self.get_model(key)  # type: ignore[attr-defined]

    async def read_audio(self, audio: bytes | np.ndarray | None, audio_key: str | None) -> tuple[np.ndarray, int]:
        """(16 kHz mono float32 waveform, duration in ms) of exactly one of ``audio`` or ``audio_key``.

        Raises ``AudioDecodeError`` for unreadable audio and ``BlobError`` for a key that cannot be read.
        """
        if (audio is None) == (audio_key is None):
            raise ValueError("give exactly one of audio (bytes or samples) and audio_key (a blob key)")
        return await asyncio.to_thread(self._read_audio, audio, audio_key)

    def _read_audio(self, audio: bytes | np.ndarray | None, audio_key: str | None) -> tuple[np.ndarray, int]:
        if audio_key is not None:
            audio = self.blobs.get_bytes(audio_key)
        if isinstance(audio, (bytes, bytearray, memoryview)):
            decoded = decode_audio(bytes(audio), max_seconds=self.settings.max_audio_seconds)
            return decoded.waveform, decoded.duration_ms
        wave = np.asarray(audio, dtype=np.float32).reshape(-1)
        return wave, duration_ms(wave)
