"""What a page draws of a processed audio file: peaks and spectrogram windows from the blobs stored beside it.

Inference files get them from the Detector, dataset audio from the preprocessing run; both
answer through these functions, so the shapes, limits and refusals are the same.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Depends, Query

from cluster.blob_keys import peaks_key, spectrogram_key
from cluster.blob_signing import BlobNotFound
from cluster.blob_store import BlobStore
from data_pipelines import peaks, spectrogram
from data_pipelines.features import FRAME_HOP_MS
from schemas.datasets import MAX_SPAN_MS
from schemas.inference import Peaks, Spectrogram
from serve_app.errors import ApiError

MAX_PEAK_PIXELS = 200_000  # about 1 MB of JSON: a longer window needs fewer pixels per second


@dataclass
class PeaksWindow:
    pixels_per_second: Annotated[float, Query(gt=0, le=peaks.BASE_BUCKETS_PER_S, description="Zoom: min/max pairs per second of audio.")] = 20.0
    start_ms: Annotated[int, Query(ge=0, le=MAX_SPAN_MS)] = 0
    end_ms: Annotated[int | None, Query(gt=0, le=MAX_SPAN_MS, description="Default: the end of the file.")] = None


@dataclass
class SpectrogramWindow:
    start_ms: Annotated[int, Query(ge=0, le=MAX_SPAN_MS)] = 0
    end_ms: Annotated[int | None, Query(gt=0, le=MAX_SPAN_MS, description="Default: the end of the file.")] = None
    max_frames: Annotated[int, Query(ge=1, le=4000, description="Wider windows are max-pooled to this many frames.")] = 1500


PeaksQuery = Annotated[PeaksWindow, Depends()]
SpectrogramQuery = Annotated[SpectrogramWindow, Depends()]


def _stored(blobs: BlobStore, key: str, what: str, processed: bool, status: str) -> bytes:
    if not processed:
        raise ApiError(409, f"No {what} yet: it is computed when the file is processed; this file is {status}")
    try:
        return blobs.get_bytes(key)
    except BlobNotFound:
        raise ApiError(409, f"No {what} is stored for this file: it was processed before they were kept") from None


def _window_end(start_ms: int, end_ms: int | None, duration_ms: int) -> int:
    end = min(end_ms if end_ms is not None else duration_ms, duration_ms)
    if end <= start_ms:
        raise ApiError(400, f"start_ms must be before end_ms and the file's end ({duration_ms} ms)", details={"duration_ms": duration_ms})
    return end


def peaks_answer(blobs: BlobStore, audio_key: str, duration_ms: int | None, processed: bool, status: str, q: PeaksWindow) -> Peaks:
    base = peaks.from_bytes(_stored(blobs, peaks_key(audio_key), "peaks", processed, status))
    duration = duration_ms or len(base) * 1000 // peaks.BASE_BUCKETS_PER_S
    end = _window_end(q.start_ms, q.end_ms, duration)
    if (end - q.start_ms) / 1000 * q.pixels_per_second > MAX_PEAK_PIXELS:
        raise ApiError(400, f"at most {MAX_PEAK_PIXELS} pixels per answer: lower pixels_per_second or narrow the window")
    pixels = peaks.window(base, q.pixels_per_second, q.start_ms, end)
    return Peaks(duration_ms=duration, start_ms=q.start_ms, end_ms=end, pixels_per_second=q.pixels_per_second,
                 scale=peaks.PEAKS_SCALE, data=pixels.reshape(-1).tolist())


def spectrogram_answer(blobs: BlobStore, audio_key: str, duration_ms: int | None, processed: bool, status: str,
                       q: SpectrogramWindow) -> Spectrogram:
    spec = spectrogram.from_bytes(_stored(blobs, spectrogram_key(audio_key), "spectrogram", processed, status))
    duration = duration_ms or len(spec) * FRAME_HOP_MS
    end = _window_end(q.start_ms, q.end_ms, duration)
    frames, ms_per_frame = spectrogram.window(spec, q.start_ms, end, q.max_frames)
    return Spectrogram(start_ms=q.start_ms, end_ms=end, ms_per_frame=ms_per_frame, frames=len(frames), bands=spec.shape[1],
                       log_low=spectrogram.LOG_LOW, log_high=spectrogram.LOG_HIGH,
                       data=base64.b64encode(np.ascontiguousarray(frames).tobytes()).decode())
