"""Frame-level multi-label artifact detector and its self-contained checkpoint.

Input features [B, T, F] (10 ms frames) -> logits [B, T, C], one per frame and
artifact type. Two paths meet at the head:
- local, at the full 10 ms frame rate: per-feature standardisation (mean/std buffers
  fitted on the training set, saved with the weights), an "inside the file" channel
  (input frames that are NaN are padding: zeroed, flagged 0), a 1x1 projection and
  residual dilated 1-D convolutions, so a 20 ms glitch keeps its onset to within a frame;
- context, at 1/``context_pool`` of the frame rate: a bidirectional GRU over the
  average-pooled local features, spanning the whole window (what tells a 1.5 s pause
  from a pause between words), repeated back to the frame rate.
Pooling before the GRU (its recurrence is the costly, sequential part) keeps the
model at thousands of windows per second on a CPU core.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from data_pipelines.features import FEATURE_VERSION, feature_count
from train_jobs.windows import WindowSpec

CHECKPOINT_FORMAT = 1  # bumped when the checkpoint layout changes
MIN_FEATURE_STD = 1e-3  # floor on fitted feature std (constant features)


@dataclass(frozen=True)
class DetectorDims:
    """Everything needed to rebuild a ``FrameDetector``; saved in the checkpoint."""

    n_features: int
    n_classes: int
    channels: int = 64  # conv channels
    hidden: int = 64  # GRU units per direction
    kernel_size: int = 3  # frames, odd
    n_conv_layers: int = 4  # dilations 1, 2, 4, 8: a 31-frame (310 ms) receptive field
    context_pool: int = 4  # frames per GRU step (40 ms)
    dropout: float = 0.1

    @property
    def receptive_frames(self) -> int:
        """Frames on each side that reach one output of the local path (15 for the defaults)."""
        return (self.kernel_size - 1) // 2 * (2**self.n_conv_layers - 1)

    def __post_init__(self) -> None:
        for name in ("n_features", "n_classes", "channels", "hidden", "n_conv_layers", "context_pool"):
            if getattr(self, name) < 1:
                raise ValueError(f"DetectorDims.{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"DetectorDims.kernel_size must be odd and >= 1, got {self.kernel_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DetectorDims.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class DetectorMeta:
    """What travels with the weights: dims, class order, window geometry, feature set, free-form extras."""

    dims: DetectorDims
    artifact_types: tuple[str, ...]
    window: WindowSpec
    extra: Mapping[str, Any] = field(default_factory=dict)
    feature_version: int = 1  # ``compute_features(..., version=)`` the model was trained on


class _ConvBlock(nn.Module):
    """Residual same-length dilated conv: x + Dropout(GELU(BN(conv(x)))), [B, C, T]."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(
            channels, channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2
        )
        self.norm = nn.BatchNorm1d(channels)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.act(self.norm(self.conv(x))))


class FrameDetector(nn.Module):
    """[B, T, n_features] float32 -> frame logits [B, T, n_classes] (multi-label).

    A frame with any NaN feature is padding (outside the file).
    """

    def __init__(self, dims: DetectorDims):
        super().__init__()
        self.dims = dims
        self.register_buffer("feature_mean", torch.zeros(dims.n_features))
        self.register_buffer("feature_std", torch.ones(dims.n_features))
        self.proj = nn.Conv1d(dims.n_features + 1, dims.channels, kernel_size=1)  # + inside-file flag
        self.convs = nn.Sequential(
            *(
                _ConvBlock(dims.channels, dims.kernel_size, 2**i, dims.dropout)
                for i in range(dims.n_conv_layers)
            )
        )
        self.rnn = nn.GRU(dims.channels, dims.hidden, batch_first=True, bidirectional=True)
        # A linear head over [local, context] split in two: the context half runs at the pooled rate.
        self.head_local = nn.Linear(dims.channels, dims.n_classes)
        self.head_context = nn.Linear(2 * dims.hidden, dims.n_classes, bias=False)

    def set_normalization(self, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray) -> None:
        """Per-feature standardisation fitted on training frames; stored as buffers."""
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32))
        expected = (self.dims.n_features,)
        if mean_t.shape != expected or std_t.shape != expected:
            raise ValueError(
                f"feature mean/std must have shape {expected}, got {tuple(mean_t.shape)} "
                f"and {tuple(std_t.shape)}"
            )
        self.feature_mean.copy_(mean_t)
        self.feature_std.copy_(std_t.clamp_min(MIN_FEATURE_STD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local_path(x)  # [B, channels, T]
        context = self.context_path(self.pool(local))  # [B, ceil(T/pool), n_classes]
        n_frames = x.shape[1]
        context_logits = context.repeat_interleave(self.dims.context_pool, dim=1)[:, :n_frames]
        return self.head_local(local.transpose(1, 2)) + context_logits  # [B, T, n_classes]

    # The three parts of ``forward``, which serving runs separately (``train_jobs.detection``):
    # the local path once over a whole file, the context path per window.

    def local_path(self, x: torch.Tensor) -> torch.Tensor:
        """Features [B, T, F] -> local activations [B, channels, T] (NaN frames read as padding)."""
        if x.ndim != 3 or x.shape[-1] != self.dims.n_features:
            raise ValueError(
                f"expected input [batch, frames, {self.dims.n_features}], got {tuple(x.shape)}"
            )
        inside = torch.isfinite(x).all(dim=-1, keepdim=True)  # [B, T, 1]
        x = torch.where(inside, (x - self.feature_mean) / self.feature_std, 0.0)
        x = torch.cat([x, inside.to(x.dtype)], dim=-1)
        return self.convs(self.proj(x.transpose(1, 2)))

    def pool(self, local: torch.Tensor) -> torch.Tensor:
        """Local activations [B, channels, T] -> the context path's steps [B, channels, ceil(T/pool)]."""
        return nn.functional.avg_pool1d(local, self.dims.context_pool, ceil_mode=True)

    def context_path(self, pooled: torch.Tensor, steps: tuple[int, int] | None = None) -> torch.Tensor:
        """Pooled activations [B, channels, S] -> context logits [B, S, n_classes], one per pooled step.

        ``steps=(a, b)``: only steps a..b-1 are wanted, so the forward recurrence stops at b and
        the backward one at a: the same values for those steps, [B, b - a, n_classes], with less
        sequential work (serving wants a window's chunk, not its context).
        """
        seq = pooled.transpose(1, 2)  # [B, S, channels]
        if steps is None:
            context, _ = self.rnn(seq)  # [B, S, 2*hidden]
            return self.head_context(context)
        a, b = steps
        forward, backward = self._directions()
        ahead, _ = forward(seq[:, :b])
        behind, _ = backward(seq[:, a:].flip(1))
        return self.head_context(torch.cat([ahead[:, a:], behind.flip(1)[:, : b - a]], dim=-1))

    def _directions(self) -> tuple[nn.GRU, nn.GRU]:
        """The bidirectional GRU's two directions as one-way GRUs sharing its parameters (not submodules:
        the checkpoint keeps its layout)."""
        cached = self.__dict__.get("_direction_grus")
        if cached is not None and cached[0].weight_ih_l0 is self.rnn.weight_ih_l0:
            return cached
        grus = []
        for suffix in ("", "_reverse"):
            gru = nn.GRU(self.dims.channels, self.dims.hidden, batch_first=True)
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                setattr(gru, name, getattr(self.rnn, name + suffix))
            grus.append(gru)
        object.__setattr__(self, "_direction_grus", tuple(grus))
        return self.__dict__["_direction_grus"]


def feature_stats(feature_arrays: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std float32 [F] over all frames of [T, F] arrays (float64 sums)."""
    sums = None
    for feats in feature_arrays:
        f = np.asarray(feats, dtype=np.float64)
        if sums is None:
            sums = np.zeros((3, f.shape[1]))
        sums[0] += f.sum(0)
        sums[1] += (f * f).sum(0)
        sums[2, 0] += f.shape[0]
    if sums is None:
        raise ValueError("feature_stats needs at least one frame")
    return stats_from_sums(sums)


def stats_from_sums(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std float32 [F] from float64 [3, F]: per-feature sums, sums of squares, the frame count at [2, 0]
    (sums from several workers add up to the sums of all their frames)."""
    count = float(sums[2, 0])
    if count <= 0:
        raise ValueError("feature statistics need at least one frame")
    mean = sums[0] / count
    std = np.sqrt(np.maximum(sums[1] / count - mean * mean, 0.0))
    return mean.astype(np.float32), np.maximum(std, MIN_FEATURE_STD).astype(np.float32)


def save_checkpoint(
    model: nn.Module,
    *,
    artifact_types: Sequence[str],
    window: WindowSpec,
    extra: Mapping[str, Any] | None = None,
    feature_version: int = FEATURE_VERSION,
) -> bytes:
    """Serialise weights + dims + class order + window spec + feature set to bytes (``torch.save``).

    ``extra`` must hold plain Python values (it is loaded with ``weights_only=True``).
    A DDP-wrapped model is unwrapped.
    """
    module = getattr(model, "module", model)
    if not isinstance(module, FrameDetector):
        raise TypeError(f"save_checkpoint expects a FrameDetector, got {type(module).__name__}")
    if len(artifact_types) != module.dims.n_classes:
        raise ValueError(
            f"{len(artifact_types)} artifact types {list(artifact_types)} for a model with "
            f"{module.dims.n_classes} classes"
        )
    if feature_count(feature_version) != module.dims.n_features:
        raise ValueError(
            f"feature set {feature_version} has {feature_count(feature_version)} columns; "
            f"the model takes {module.dims.n_features}"
        )
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "feature_version": feature_version,
        "dims": asdict(module.dims),
        "artifact_types": list(artifact_types),
        "window": asdict(window),
        "extra": dict(extra or {}),
        "model_state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def load_checkpoint(data: bytes, map_location: str | torch.device = "cpu") -> tuple[FrameDetector, DetectorMeta]:
    """Rebuild the model (eval mode) and its metadata from ``save_checkpoint`` bytes."""
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"not a readable detector checkpoint ({len(data)} bytes): {e}") from e
    required = {"format", "dims", "artifact_types", "window", "extra", "model_state_dict"}
    missing = required - set(checkpoint) if isinstance(checkpoint, dict) else required
    if missing:
        raise ValueError(f"detector checkpoint lacks {sorted(missing)}; expected keys {sorted(required)}")
    if checkpoint["format"] != CHECKPOINT_FORMAT:
        raise ValueError(
            f"detector checkpoint format {checkpoint['format']} is not supported; "
            f"this version reads format {CHECKPOINT_FORMAT}"
        )
    dims = DetectorDims(**checkpoint["dims"])
    model = FrameDetector(dims)
    model.load_state_dict(checkpoint["model_state_dict"])
    model.to(map_location).eval()
    meta = DetectorMeta(
        dims=dims,
        artifact_types=tuple(checkpoint["artifact_types"]),
        window=WindowSpec(**checkpoint["window"]),
        extra=checkpoint["extra"],
        feature_version=int(checkpoint.get("feature_version", 1)),  # checkpoints before set 2 say nothing
    )
    return model, meta
