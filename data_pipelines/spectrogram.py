"""A file's spectrogram for the review page: the detector's own log-mel bands, as uint8, per 10 ms.

The page shows what the model hears. The Detector already computes these bands for every file it
processes (``data_pipelines.features``); keeping them quantised (64 bytes per 10 ms frame,
compressed) costs far less than decoding the audio again to draw a window of it.
"""

from __future__ import annotations

import io

import numpy as np

from data_pipelines.features import FRAME_HOP_MS, MEL_FLOOR, N_MELS

LOG_LOW = float(np.log(MEL_FLOOR))  # the floor of log(mel + floor): byte 0
LOG_HIGH = 6.0  # about a full-scale tone's band power: byte 255


def from_features(features: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) uint8 of the log-mel columns of ``compute_features`` output."""
    bands = np.asarray(features[:, :N_MELS], dtype=np.float32)
    scaled = (bands - LOG_LOW) / (LOG_HIGH - LOG_LOW) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def to_bytes(spec: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, spectrogram=spec.astype(np.uint8))
    return buf.getvalue()


def from_bytes(data: bytes) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        spec = z["spectrogram"]
    if spec.dtype != np.uint8 or spec.ndim != 2 or spec.shape[1] != N_MELS:
        raise ValueError("not a spectrogram array")
    return spec


def window(spec: np.ndarray, start_ms: int, end_ms: int, max_frames: int) -> tuple[np.ndarray, float]:
    """The frames of ``[start_ms, end_ms)``, max-pooled to at most ``max_frames``; and the ms per returned frame."""
    first = max(0, start_ms // FRAME_HOP_MS)
    last = min(len(spec), -(-end_ms // FRAME_HOP_MS))
    part = spec[first:last]
    if len(part) <= max_frames or len(part) == 0:
        return part, float(FRAME_HOP_MS)
    edges = np.unique(np.linspace(0, len(part), max_frames + 1).round().astype(int))
    pooled = np.maximum.reduceat(part, edges[:-1], axis=0)
    return pooled, (last - first) * FRAME_HOP_MS / len(pooled)
