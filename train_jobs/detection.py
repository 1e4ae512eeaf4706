"""Detector prediction: the one path from a file's features to the detections a user sees.

Training evaluation, the Detector deployment, evaluations and the benchmarks all call these
functions, so a model's published ``eval_metrics`` grade the code that serves it. The
deployment batches the forward pass across files, so the path is cut in three steps:
``split_windows`` (windows.py) → ``forward_windows`` → ``detections_from_chunks``; ``detect``
runs them for one file.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from data_pipelines.events import Event, event_metrics, postprocess
from data_pipelines.features import FRAME_HOP_MS
from schemas.inference import InferenceConfig
from train_jobs.models.detector import DetectorMeta
from train_jobs.windows import WindowSpec, merge_windows, split_windows

FORWARD_CHUNK_WINDOWS = 512  # windows per forward pass: bounds activation memory on long files


@torch.inference_mode()
def forward_windows(
    model: nn.Module, windows: np.ndarray, spec: WindowSpec, *, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Chunk probabilities [N, chunk, C] for model inputs [N, W, F].

    The model sees context on both sides of a chunk; only the chunk's own frames are predictions.
    """
    model.eval()
    ctx, chunk = spec.context_frames, spec.chunk_frames
    parts = []
    for start in range(0, windows.shape[0], FORWARD_CHUNK_WINDOWS):
        x = torch.from_numpy(np.ascontiguousarray(windows[start : start + FORWARD_CHUNK_WINDOWS], dtype=np.float32))
        logits = model(x.to(device))[:, ctx : ctx + chunk]
        parts.append(torch.sigmoid(logits).float().cpu().numpy())
    return np.concatenate(parts, axis=0)


def frame_probs(model: nn.Module, features: np.ndarray, spec: WindowSpec, *, device: str | torch.device = "cpu") -> np.ndarray:
    """Frame probabilities [T, C] for one file's features [T, F]."""
    windows = split_windows(features.astype(np.float32, copy=False), spec)
    return merge_windows(forward_windows(model, windows, spec, device=device), features.shape[0], spec)


def detections_from_chunks(
    chunk_probs: np.ndarray,
    n_frames: int,
    spec: WindowSpec,
    artifact_types: Sequence[str],
    config: InferenceConfig,
    duration_ms: int,
) -> list[Event]:
    """The detections of one file, exactly as the API reports them.

    Chunk outputs are overlap-averaged to frames, thresholded, merged and filtered by
    ``config``; times are whole ms ending inside the file, confidence has four decimals.
    """
    probs = merge_windows(chunk_probs, n_frames, spec)
    events = postprocess(
        probs,
        artifact_types,
        threshold=config.threshold,
        merge_window_ms=config.merge_window_ms,
        min_duration_ms=config.min_duration_ms,
        hop_ms=FRAME_HOP_MS,
    )
    out = []
    for e in events:
        start, end = int(e.start_ms), int(min(e.end_ms, duration_ms))
        if end > start:
            out.append(Event(e.artifact_type, start, end, round(float(e.confidence), 4)))
    return out


def detect(
    model: nn.Module,
    meta: DetectorMeta,
    features: np.ndarray,
    *,
    duration_ms: int,
    config: InferenceConfig | None = None,
    device: str | torch.device = "cpu",
) -> list[Event]:
    """Detections for one file's features [T, F] (frames of 10 ms); ``config`` defaults as the API's."""
    windows = split_windows(features.astype(np.float32, copy=False), meta.window)
    chunks = forward_windows(model, windows, meta.window, device=device)
    return detections_from_chunks(
        chunks, features.shape[0], meta.window, meta.artifact_types, config or InferenceConfig(), duration_ms
    )


def detection_dict(event: Event) -> dict:
    """One detection in the API's shape (``schemas.inference.Detection``)."""
    return {"artifact_type": event.artifact_type, "start_ms": event.start_ms, "end_ms": event.end_ms, "confidence": event.confidence}


def evaluate_detector(
    model: nn.Module,
    meta: DetectorMeta,
    files: Iterable[tuple[np.ndarray, int, Sequence[Event]]],
    *,
    config: InferenceConfig | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Event-based precision/recall/F1 (overall and per class) over (features, duration_ms, reference events).

    Detection runs through ``detect`` with the API's defaults unless ``config`` is given, so the
    figures are those a user of the trained model sees. JSON-safe, as ``event_metrics``.
    """
    pairs = [
        (list(reference), detect(model, meta, features, duration_ms=duration_ms, config=config, device=device))
        for features, duration_ms, reference in files
    ]
    return event_metrics(pairs, meta.artifact_types)
