"""Waveform peaks: min/max of the decoded 16 kHz signal per bucket, computed once and served by zoom level.

A browser never decodes a long file to draw it: the server keeps ``BASE_BUCKETS_PER_S`` min/max
pairs per second as int8 (``PEAKS_SCALE`` = full scale), 400 bytes per second of audio (1.4 MB
for an hour), and answers any coarser ``pixels_per_second`` over any time window by taking the
min of the mins and the max of the maxes of the buckets each pixel covers.
"""

from __future__ import annotations

import io

import numpy as np

BASE_BUCKETS_PER_S = 200  # 5 ms per bucket: finer than any zoom a review page offers
PEAKS_SCALE = 127  # int8 full scale: a peak of 127 is a sample of 1.0


def compute_peaks(wave: np.ndarray, sample_rate: int = 16_000) -> np.ndarray:
    """(n_buckets, 2) int8 [min, max] per ``1 / BASE_BUCKETS_PER_S`` s of ``wave`` (the last bucket may be short)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    per = sample_rate // BASE_BUCKETS_PER_S
    n = -(-len(wave) // per) if len(wave) else 0
    if n == 0:
        return np.zeros((0, 2), dtype=np.int8)
    padded = np.pad(wave, (0, n * per - len(wave)), mode="edge").reshape(n, per)
    out = np.stack([padded.min(axis=1), padded.max(axis=1)], axis=1)
    return np.round(np.clip(np.nan_to_num(out), -1.0, 1.0) * PEAKS_SCALE).astype(np.int8)


def to_bytes(peaks: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, peaks.astype(np.int8), allow_pickle=False)
    return buf.getvalue()


def from_bytes(data: bytes) -> np.ndarray:
    peaks = np.load(io.BytesIO(data), allow_pickle=False)
    if peaks.dtype != np.int8 or peaks.ndim != 2 or peaks.shape[1] != 2:
        raise ValueError("not a peaks array")
    return peaks


def window(peaks: np.ndarray, pixels_per_second: float, start_ms: int = 0, end_ms: int | None = None) -> np.ndarray:
    """(n_pixels, 2) int8 [min, max] of ``[start_ms, end_ms)`` at ``pixels_per_second`` (at most the base rate)."""
    total_ms = len(peaks) * 1000 // BASE_BUCKETS_PER_S
    end_ms = total_ms if end_ms is None else min(end_ms, total_ms)
    first = start_ms * BASE_BUCKETS_PER_S // 1000
    last = -(-end_ms * BASE_BUCKETS_PER_S // 1000)
    part = peaks[first:last]
    if len(part) == 0:
        return np.zeros((0, 2), dtype=np.int8)
    pixels = max(1, round((end_ms - start_ms) / 1000 * min(pixels_per_second, BASE_BUCKETS_PER_S)))
    edges = np.linspace(0, len(part), pixels + 1).round().astype(int)
    edges = np.unique(edges)
    mins = np.minimum.reduceat(part[:, 0], edges[:-1])
    maxs = np.maximum.reduceat(part[:, 1], edges[:-1])
    return np.stack([mins, maxs], axis=1).astype(np.int8)
