"""A processed file's views for the pages, kept beside its audio: waveform peaks and the log-mel spectrogram.

Computed from what processing already has in hand (the decoded 16 kHz signal and the detector
features), by the Detector for inference files and by the preprocessing run for dataset audio.
"""

from __future__ import annotations

import numpy as np

from cluster.blob_keys import peaks_key, spectrogram_key
from cluster.blob_store import BlobStore
from data_pipelines import peaks, spectrogram


def store_views(blobs: BlobStore, audio_key: str, wave: np.ndarray, features: np.ndarray) -> None:
    blobs.put_bytes(peaks_key(audio_key), peaks.to_bytes(peaks.compute_peaks(wave)))
    blobs.put_bytes(spectrogram_key(audio_key), spectrogram.to_bytes(spectrogram.from_features(features)))
