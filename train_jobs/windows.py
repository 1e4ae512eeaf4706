"""Chunked analysis windows for the frame-level artifact detector.

A file's feature matrix [T, F] is cut into analysis chunks of ``chunk_frames`` frames
every ``stride_frames`` frames. The model sees each chunk together with
``context_frames`` of left and right context and is scored only on the chunk's own
frames: a 500 ms chunk with 500 ms of context on each side still sees 1.5 s of audio,
enough to tell a long pause from an ordinary gap between words.

Frames outside the file are NaN (``PAD_VALUE``), in inputs and in training targets
alike: the model reads NaN input frames as padding (``FrameDetector`` zeroes them and
flags them in an extra input channel) and the loss skips NaN targets. Repeating the
edge frame instead would turn the 200 ms of silence that opens a file into 700 ms of
silence, a long pause that is not there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from data_pipelines.events import Event
from data_pipelines.features import FRAME_HOP_MS

CHUNK_MS = 500  # ms of audio scored per window
STRIDE_MS = 250  # ms between consecutive chunk starts (chunks overlap by half)
CONTEXT_MS = 500  # ms of context the model sees on each side of a chunk
MIN_TARGET_MS = 100  # ms: shorter events are labelled over this span, centred on them
PAD_VALUE = np.nan  # marks frames outside the file in windows and targets


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry in feature frames (one frame = ``FRAME_HOP_MS`` ms)."""

    chunk_frames: int
    stride_frames: int
    context_frames: int

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if not 1 <= self.stride_frames <= self.chunk_frames:
            raise ValueError(
                f"stride_frames must be in [1, chunk_frames={self.chunk_frames}] so that "
                f"chunks cover every frame, got {self.stride_frames}"
            )
        if self.context_frames < 0:
            raise ValueError(f"context_frames must be >= 0, got {self.context_frames}")

    @classmethod
    def from_ms(
        cls, chunk_size_ms: float = CHUNK_MS, stride_ms: float = STRIDE_MS, context_ms: float = CONTEXT_MS
    ) -> "WindowSpec":
        """Rounds each duration to whole frames (chunk and stride to at least one)."""
        return cls(
            chunk_frames=max(1, round(chunk_size_ms / FRAME_HOP_MS)),
            stride_frames=max(1, round(stride_ms / FRAME_HOP_MS)),
            context_frames=max(0, round(context_ms / FRAME_HOP_MS)),
        )

    @property
    def window_frames(self) -> int:
        """Frames the model sees per window: context + chunk + context."""
        return self.chunk_frames + 2 * self.context_frames

    def num_windows(self, n_frames: int) -> int:
        """Windows needed to cover ``n_frames`` frames (the last chunk may run past the end)."""
        if n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
        return 1 + max(0, math.ceil((n_frames - self.chunk_frames) / self.stride_frames))


def frame_labels(
    n_frames: int,
    events: Sequence[Event],
    artifact_types: Sequence[str],
    hop_ms: int = FRAME_HOP_MS,
    *,
    min_target_ms: int = MIN_TARGET_MS,
) -> np.ndarray:
    """Multi-hot frame targets float32 [n_frames, C] for events in ms.

    Frame i covers [hop*i, hop*(i+1)) ms and is labelled when its centre lies inside
    [start_ms, end_ms): unbiased at both edges. An event shorter than ``min_target_ms``
    (a 20 ms click) is labelled over ``min_target_ms`` centred on it, so the detector
    marks it with a run that survives ``postprocess(min_duration_ms=50)`` while its
    onset and offset stay well inside the 200 ms scoring collars. An event that holds
    no frame centre still marks the frame holding its midpoint.
    """
    index = {name: c for c, name in enumerate(artifact_types)}
    labels = np.zeros((n_frames, len(artifact_types)), dtype=np.float32)
    for event in events:
        try:
            c = index[event.artifact_type]
        except KeyError as e:
            raise ValueError(
                f"event type {event.artifact_type!r} is not one of the artifact types "
                f"{list(artifact_types)}"
            ) from e
        start_ms, end_ms = event.start_ms, event.end_ms
        if end_ms - start_ms < min_target_ms:
            middle = (start_ms + end_ms) / 2
            start_ms, end_ms = middle - min_target_ms / 2, middle + min_target_ms / 2
        first = math.ceil((start_ms - hop_ms / 2) / hop_ms)
        stop = math.ceil((end_ms - hop_ms / 2) / hop_ms)
        if stop <= first:
            first = int((event.start_ms + event.end_ms) / 2 // hop_ms)
            stop = first + 1
        first, stop = max(first, 0), min(stop, n_frames)
        if first < stop:
            labels[first:stop, c] = 1.0
    return labels


def split_windows(features: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Cut [T, F] into overlapping model inputs [N, context+chunk+context, F].

    Window n holds frames [n*stride - context, n*stride + chunk + context); frames
    outside [0, T) are ``PAD_VALUE``. N = ``spec.num_windows(T)``.
    """
    views = sliding_window_view(pad_for_windows(features, spec), spec.window_frames, axis=0)[:: spec.stride_frames]
    return np.ascontiguousarray(views.transpose(0, 2, 1))  # [N, W, F]


def pad_for_windows(features: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """[T, F] with ``PAD_VALUE`` frames before and after: [(N - 1) * stride + window, F], window n starting at frame n * stride."""
    if features.ndim != 2:
        raise ValueError(f"features must be [frames, features], got shape {features.shape}")
    n_frames = features.shape[0]
    n_windows = spec.num_windows(n_frames)
    right = (n_windows - 1) * spec.stride_frames + spec.chunk_frames + spec.context_frames - n_frames
    return np.pad(features, ((spec.context_frames, right), (0, 0)), constant_values=PAD_VALUE)


def merge_windows(chunk_probs: np.ndarray, n_frames: int, spec: WindowSpec) -> np.ndarray:
    """Overlap-average per-chunk outputs [N, chunk, C] back to [n_frames, C]."""
    n_windows = spec.num_windows(n_frames)
    if chunk_probs.ndim != 3 or chunk_probs.shape[:2] != (n_windows, spec.chunk_frames):
        raise ValueError(
            f"chunk_probs must be [{n_windows}, {spec.chunk_frames}, C] for {n_frames} frames, "
            f"got shape {chunk_probs.shape}"
        )
    total = (n_windows - 1) * spec.stride_frames + spec.chunk_frames
    sums = np.zeros((total, chunk_probs.shape[2]), dtype=np.float64)
    counts = np.zeros((total, 1), dtype=np.float64)
    starts = np.arange(n_windows) * spec.stride_frames
    for offset in range(spec.chunk_frames):  # starts + offset are distinct: no index collisions
        sums[starts + offset] += chunk_probs[:, offset]
        counts[starts + offset] += 1.0
    return (sums[:n_frames] / counts[:n_frames]).astype(np.float32)


def make_training_windows(features: np.ndarray, labels: np.ndarray, spec: WindowSpec) -> list[dict]:
    """Rows ``{"x": float32 [W, F], "y": float32 [chunk, C]}`` covering one file.

    Targets of a last chunk that runs past the file are ``PAD_VALUE`` there, as its
    input frames are. Suits ``ray.data.Dataset.flat_map``.
    """
    if features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"features and labels must have the same number of frames, "
            f"got {features.shape[0]} and {labels.shape[0]}"
        )
    xs = split_windows(features.astype(np.float32, copy=False), spec)
    chunk_only = WindowSpec(spec.chunk_frames, spec.stride_frames, context_frames=0)
    ys = split_windows(labels.astype(np.float32, copy=False), chunk_only)
    return [{"x": x, "y": y} for x, y in zip(xs, ys)]
