"""Detector prediction: the one path from a file's features to the detections a user sees.

Training evaluation, the Detector deployment, evaluations and the benchmarks all call these
functions, so a model's published ``eval_metrics`` grade the code that serves it.

Windows overlap (each frame is in ``window_frames / stride_frames`` of them, 6 with the
defaults), so the model's per-frame local path (normalisation, projection, dilated
convolutions, local head) runs once over the whole file (``file_activations``) and only the
context path (pooling, GRU) runs per window (``window_context``); ``chunk_probs`` joins them.
The Detector deployment batches the context path across short files. ``forward_windows`` is
the network as it trains, window by window: its local path sees zeros past each window's edge
where the file-level pass sees the real neighbouring frames, so the two differ slightly in the
context of the outer 15 frames of each window and agree exactly on a chunk's local logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from data_pipelines.events import Event, event_metrics, postprocess
from data_pipelines.features import FRAME_HOP_MS
from schemas.inference import InferenceConfig
from train_jobs.models.detector import DetectorMeta, FrameDetector
from train_jobs.windows import WindowSpec, merge_windows, pad_for_windows

FORWARD_CHUNK_WINDOWS = 512  # windows per context pass: bounds activation memory on long files
LOCAL_SEGMENT_FRAMES = 6000  # frames per local pass (60 s, plus the receptive field either side)


def _network(model: nn.Module) -> FrameDetector:
    network = getattr(model, "module", model)  # DDP-wrapped during training
    network.eval()
    return network


@torch.inference_mode()
def forward_windows(
    model: nn.Module, windows: np.ndarray, spec: WindowSpec, *, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Chunk probabilities [N, chunk, C] for model inputs [N, W, F], each window on its own (as in training).

    The model sees context on both sides of a chunk; only the chunk's own frames are predictions.
    """
    network = _network(model)
    ctx, chunk = spec.context_frames, spec.chunk_frames
    parts = []
    for start in range(0, windows.shape[0], FORWARD_CHUNK_WINDOWS):
        x = torch.from_numpy(np.ascontiguousarray(windows[start : start + FORWARD_CHUNK_WINDOWS], dtype=np.float32))
        logits = network(x.to(device))[:, ctx : ctx + chunk]
        parts.append(torch.sigmoid(logits).float().cpu().numpy())
    return np.concatenate(parts, axis=0)


@dataclass(frozen=True)
class FileActivations:
    """One file after the local path: activations over its padded frames, the local head's logits,
    and the activations average-pooled from each frame phase (a window starting at frame s takes its
    pooled steps from phase s % pool)."""

    local: torch.Tensor  # [channels, (N - 1) * stride + window] frames of the padded file
    local_logits: torch.Tensor  # [same frames, n_classes]
    phases: torch.Tensor  # [pool, channels, steps]: phases[p, :, i] is the mean of frames p + i*pool ..
    n_windows: int


@torch.inference_mode()
def file_activations(
    model: nn.Module, features: np.ndarray, spec: WindowSpec, *, device: str | torch.device = "cpu"
) -> FileActivations:
    """The local path once over a file's features [T, F], padded with NaN frames as windows are.

    Computed in segments of LOCAL_SEGMENT_FRAMES that overlap by the receptive field, which
    gives exactly the activations of one pass over the whole file.
    """
    network = _network(model)
    padded = pad_for_windows(features.astype(np.float32, copy=False), spec)
    x = torch.from_numpy(padded).to(device)[None]
    halo, total = network.dims.receptive_frames, padded.shape[0]
    parts = []
    for start in range(0, total, LOCAL_SEGMENT_FRAMES):
        stop = min(total, start + LOCAL_SEGMENT_FRAMES)
        lo = max(0, start - halo)
        out = network.local_path(x[:, lo : min(total, stop + halo)])
        parts.append(out[0, :, start - lo : stop - lo])
    local = torch.cat(parts, dim=1)
    pool = network.dims.context_pool
    steps, tail = total // pool, nn.functional.pad(local, (0, pool - 1))  # later phases end in zeros no window reads
    phases = torch.stack([nn.functional.avg_pool1d(tail[None, :, p : p + steps * pool], pool)[0] for p in range(pool)])
    return FileActivations(local, network.head_local(local.T), phases, spec.num_windows(features.shape[0]))


def _context_steps(spec: WindowSpec, pool: int) -> tuple[int, int]:
    """The pooled steps [a, b) of a window that hold its chunk's frames."""
    return spec.context_frames // pool, (spec.context_frames + spec.chunk_frames - 1) // pool + 1


@torch.inference_mode()
def pooled_windows(model: nn.Module, acts: FileActivations, spec: WindowSpec, first: int = 0, count: int | None = None) -> torch.Tensor:
    """The context path's input [count, channels, steps] for windows ``first`` .. ``first + count`` of a file:
    what ``FrameDetector.pool`` gives on each window, read from the phase tables (a partial last step
    averages the frames it has)."""
    pool = _network(model).dims.context_pool
    count = acts.n_windows - first if count is None else count
    starts = (first + torch.arange(count, device=acts.local.device)) * spec.stride_frames
    whole, rest = divmod(spec.window_frames, pool)
    index = starts[:, None] // pool + torch.arange(whole, device=starts.device)[None]  # [count, whole]
    pooled = acts.phases[(starts % pool)[:, None], :, index].permute(0, 2, 1)  # [count, channels, whole]
    if rest:
        tail = acts.local[:, starts[:, None] + whole * pool + torch.arange(rest, device=starts.device)[None]]  # [channels, count, rest]
        pooled = torch.cat([pooled, tail.mean(dim=2).T[:, :, None]], dim=2)
    return pooled.contiguous()


@torch.inference_mode()
def window_context(model: nn.Module, pooled: torch.Tensor, spec: WindowSpec) -> torch.Tensor:
    """Context logits [N, chunk steps, n_classes] of pooled windows [N, channels, steps] (any files' windows together)."""
    network = _network(model)
    steps = _context_steps(spec, network.dims.context_pool)
    return torch.cat([
        network.context_path(pooled[a : a + FORWARD_CHUNK_WINDOWS], steps) for a in range(0, pooled.shape[0], FORWARD_CHUNK_WINDOWS)
    ])


@torch.inference_mode()
def file_context(model: nn.Module, acts: FileActivations, spec: WindowSpec) -> torch.Tensor:
    """Context logits of every window of one file, FORWARD_CHUNK_WINDOWS windows at a time."""
    return torch.cat([
        window_context(model, pooled_windows(model, acts, spec, a, min(FORWARD_CHUNK_WINDOWS, acts.n_windows - a)), spec)
        for a in range(0, acts.n_windows, FORWARD_CHUNK_WINDOWS)
    ])


@torch.inference_mode()
def chunk_probs(model: nn.Module, acts: FileActivations, context: torch.Tensor, spec: WindowSpec) -> np.ndarray:
    """Chunk probabilities [N, chunk, C]: each chunk frame's local logit plus its pooled step's context logit."""
    pool = _network(model).dims.context_pool
    offsets = np.arange(spec.context_frames, spec.context_frames + spec.chunk_frames)
    frames = torch.from_numpy(np.arange(acts.n_windows)[:, None] * spec.stride_frames + offsets[None]).to(acts.local_logits.device)
    steps = torch.from_numpy(offsets // pool - _context_steps(spec, pool)[0]).to(context.device)
    return torch.sigmoid(acts.local_logits[frames] + context[:, steps]).float().cpu().numpy()


def forward_file(model: nn.Module, features: np.ndarray, spec: WindowSpec, *, device: str | torch.device = "cpu") -> np.ndarray:
    """Chunk probabilities [N, chunk, C] of one file's features [T, F]: the serving path."""
    acts = file_activations(model, features, spec, device=device)
    return chunk_probs(model, acts, file_context(model, acts, spec), spec)


def frame_probs(model: nn.Module, features: np.ndarray, spec: WindowSpec, *, device: str | torch.device = "cpu") -> np.ndarray:
    """Frame probabilities [T, C] for one file's features [T, F]."""
    return merge_windows(forward_file(model, features, spec, device=device), features.shape[0], spec)


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
    chunks = forward_file(model, features, meta.window, device=device)
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
