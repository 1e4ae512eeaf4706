"""Event-level evaluation of a trained detector on annotated files."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from data_pipelines.events import Event, event_metrics, postprocess
from train_jobs.models.detector import DetectorMeta, FrameDetector
from train_jobs.windows import predict_probs


def detect_events(
    model: FrameDetector,
    meta: DetectorMeta,
    features: np.ndarray,
    *,
    threshold: float = 0.5,
    merge_window_ms: int = 200,
    min_duration_ms: int = 50,
    device: str | torch.device = "cpu",
) -> list[Event]:
    """Timestamped detections for one file's features [T, F] (frames of 10 ms)."""
    probs = predict_probs(model, features, meta.window, device=device)
    return postprocess(
        probs,
        meta.artifact_types,
        threshold=threshold,
        merge_window_ms=merge_window_ms,
        min_duration_ms=min_duration_ms,
    )


def evaluate_detector(
    model: FrameDetector,
    meta: DetectorMeta,
    files: Iterable[tuple[np.ndarray, Sequence[Event]]],
    *,
    threshold: float = 0.5,
    merge_window_ms: int = 200,
    min_duration_ms: int = 50,
    device: str | torch.device = "cpu",
) -> dict:
    """Event-based precision/recall/F1 (overall and per class) over (features, reference events) pairs.

    Detection runs exactly as at inference (windows -> merge -> postprocess), so the
    figures are those a user of the trained model will see. JSON-safe, as ``event_metrics``.
    """
    pairs = [
        (
            list(reference),
            detect_events(
                model,
                meta,
                features,
                threshold=threshold,
                merge_window_ms=merge_window_ms,
                min_duration_ms=min_duration_ms,
                device=device,
            ),
        )
        for features, reference in files
    ]
    return event_metrics(pairs, meta.artifact_types)
