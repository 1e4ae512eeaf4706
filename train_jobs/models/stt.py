"""CTC speech-to-text acoustic models and their self-contained checkpoint.

Two encoders share one interface, ``featurize(waveforms, lengths)`` then
``forward(features, lengths) -> (log_probs [B, T', V], out_lengths [B])``:

* :class:`CtcConformer` (``encoder="conformer"``): 80-bin log-mel (25 ms window, 10 ms hop,
  data_pipelines.stt_features.log_mel), per-utterance mean/variance normalisation, SpecAugment while training,
  a two-layer stride-2 Conv2d subsampler (x4: one output frame per 40 ms),
  ``torchaudio.models.Conformer`` and a linear layer onto the character vocabulary.
* :class:`SslCtc` (``encoder="wav2vec2"`` / ``"wavlm"``): a self-supervised
  ``torchaudio.models`` encoder on the raw waveform (20 ms frames) with a linear CTC head;
  :func:`load_ssl_encoder` reads published weights from the local torch hub cache only.

Everything needed to rebuild a model (dims, vocabulary, base model name, the domain
vocabulary boosted at decode time) travels in the checkpoint bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchaudio
import torchaudio.functional as AF
from torch import nn

from data_pipelines.audio import SAMPLE_RATE
from data_pipelines.stt_features import HOP, log_mel
from train_jobs.stt_lm import WordLM, build_word_lm
from train_jobs.stt_vocab import VOCAB

CHECKPOINT_FORMAT = 1  # bumped when the checkpoint layout changes
SUBSAMPLING = 4  # log-mel frames per conformer output frame (40 ms)
NORM_MIN_STD = 1e-2  # floor on the per-utterance feature std (log units)
FREQ_MASKS, FREQ_MASK_BINS = 2, 15  # SpecAugment: masks per utterance, widest mask (mel bins)
TIME_MASKS, TIME_MASK_FRAMES = 4, 30  # masks per utterance, widest mask (10 ms frames)
TIME_MASK_MAX_FRACTION = 0.05  # a time mask covers at most this share of the frames
SSL_ENCODERS = ("wav2vec2", "wavlm")
ENCODERS = ("conformer", *SSL_ENCODERS)


@dataclass(frozen=True)
class SttDims:
    """Everything needed to rebuild an acoustic model; saved in the checkpoint."""

    encoder: str = "conformer"  # one of ENCODERS
    vocab_size: int = len(VOCAB)
    n_mels: int = 80
    d_model: int = 144
    n_heads: int = 4
    ffn_dim: int = 576
    n_layers: int = 4
    conv_kernel: int = 15  # conformer depthwise kernel, 40 ms frames (odd)
    subsampling_channels: int = 64
    dropout: float = 0.1
    ssl: Mapping[str, Any] | None = field(default=None)  # torchaudio wav2vec2_model/wavlm_model kwargs
    ssl_normalize_waveform: bool = False  # per-utterance standardised input (large wav2vec2/HuBERT)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"SttDims.encoder must be one of {ENCODERS}, got {self.encoder!r}")
        for name in ("vocab_size", "n_mels", "d_model", "n_heads", "ffn_dim", "n_layers", "subsampling_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"SttDims.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"SttDims.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"SttDims.conv_kernel must be odd and >= 1, got {self.conv_kernel}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SttDims.dropout must be in [0, 1), got {self.dropout}")
        if (self.encoder in SSL_ENCODERS) != (self.ssl is not None):
            raise ValueError(f"SttDims.ssl holds the encoder config exactly when encoder is in {SSL_ENCODERS}")


@dataclass(frozen=True)
class SttMeta:
    """What travels with the weights."""

    dims: SttDims
    vocab: tuple[str, ...]
    base_model: str  # e.g. "general", "medical"
    vocabulary: tuple[str, ...] = ()  # domain terms boosted at decode time
    extra: Mapping[str, Any] = field(default_factory=dict)
    language_model: WordLM | None = None  # a custom model's word n-grams of its transcripts


def _length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """[B, size] True on valid positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class CtcConformer(nn.Module):
    """Log-mel features [B, T, n_mels] -> CTC log-probs [B, ceil(ceil(T/2)/2), vocab_size]."""

    frame_shift_s = HOP * SUBSAMPLING / SAMPLE_RATE  # 0.04 s per output frame

    def __init__(self, dims: SttDims):
        super().__init__()
        if dims.encoder != "conformer":
            raise ValueError(f"CtcConformer needs encoder='conformer', got {dims.encoder!r}")
        self.dims = dims
        c = dims.subsampling_channels
        self.subsample = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1), nn.GELU(), nn.Conv2d(c, c, 3, stride=2, padding=1), nn.GELU()
        )
        freq_out = (dims.n_mels + 3) // 4  # two stride-2, pad-1, kernel-3 convolutions
        self.project = nn.Linear(c * freq_out, dims.d_model)
        self.drop = nn.Dropout(dims.dropout)
        self.conformer = torchaudio.models.Conformer(
            input_dim=dims.d_model,
            num_heads=dims.n_heads,
            ffn_dim=dims.ffn_dim,
            num_layers=dims.n_layers,
            depthwise_conv_kernel_size=dims.conv_kernel,
            dropout=dims.dropout,
        )
        self.head = nn.Linear(dims.d_model, dims.vocab_size)
        # Masks drawn here while training; the training loop turns this off when its data
        # path draws seeded SpecAugment per utterance instead (data_pipelines.augment).
        self.spec_augment = True

    def featurize(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return log_mel(waveforms, lengths, self.dims.n_mels)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features.ndim != 3 or features.shape[-1] != self.dims.n_mels:
            raise ValueError(f"expected features [batch, frames, {self.dims.n_mels}], got {tuple(features.shape)}")
        lengths = lengths.to(features.device).clamp(1, features.shape[1])
        mask = _length_mask(lengths, features.shape[1])[..., None]  # [B, T, 1]
        n = lengths[:, None, None].to(features.dtype)
        mean = (features * mask).sum(1, keepdim=True) / n
        var = (((features - mean) * mask) ** 2).sum(1, keepdim=True) / n
        x = ((features - mean) / var.sqrt().clamp_min(NORM_MIN_STD)) * mask
        if self.training and self.spec_augment:
            x = _spec_augment(x)
        out_lengths = self.output_lengths(lengths)
        x = self.drop(torch.stack([self._subsample(x[i, :n], int(out_lengths.max())) for i, n in enumerate(lengths.tolist())]))
        x = self._encode(x, out_lengths)
        return torch.log_softmax(self.head(x).float(), dim=-1), out_lengths

    def _encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``self.conformer`` ([B, T, d_model] -> same) with padded frames zeroed before each
        depthwise convolution.

        torchaudio's layers mask padding only in attention; their depthwise convolution reads the
        padded frames' activations into the last valid frames, and attention then spreads that
        through the whole utterance, so an utterance's transcript depended on the longest one
        batched with it. Zeroed, the padding reads as the zeros a lone utterance's convolution
        pads with: the same parameters, and a batch gives each utterance what it gets alone.
        """
        valid = _length_mask(lengths, x.shape[1])  # [B, T]
        padding, keep = valid.logical_not(), valid.to(x.dtype)[:, None, :]  # attention's mask; [B, 1, T]
        x = x.transpose(0, 1)  # the layers run [T, B, D]
        for layer in self.conformer.conformer_layers:
            x = _conformer_layer(layer, x, padding, keep)
        return x.transpose(0, 1)

    def _subsample(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """One utterance's normalised features [T, n_mels] (its own frames only) -> projected
        frames [frames, d_model], zero past its own.

        One utterance at a time: its activations (a few MB) stay in the CPU's caches where a
        batch's (about 50 MB a layer) do not, and the subsampler takes half the time (the forward
        pass of the 60 utterances of bench/stt_peer.py on one thread: 0.65 s against 0.9 s); and
        without the batch's padding the convolutions see the zeros a lone utterance is padded with.
        """
        y = self.subsample(x[None, None])  # [1, C, T/4, F/4]
        _, c, t, f = y.shape
        y = self.project(y.permute(0, 2, 1, 3).reshape(t, c * f))
        return nn.functional.pad(y, (0, 0, 0, frames - t))


def _conformer_layer(layer: nn.Module, x: torch.Tensor, padding: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """torchaudio ``ConformerLayer.forward`` on [T, B, D] with ``keep`` ([B, 1, T], 0 on padding)
    applied to the convolution module's input to its depthwise convolution."""
    residual = x
    x = layer.ffn1(x) * 0.5 + residual
    if layer.convolution_first:
        x = x + _convolution(layer.conv_module, x, keep)
    residual = x
    y = layer.self_attn_layer_norm(x)
    y, _ = layer.self_attn(query=y, key=y, value=y, key_padding_mask=padding, need_weights=False)
    x = layer.self_attn_dropout(y) + residual
    if not layer.convolution_first:
        x = x + _convolution(layer.conv_module, x, keep)
    x = layer.ffn2(x) * 0.5 + x
    return layer.final_layer_norm(x)


def _convolution(module: nn.Module, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """torchaudio's convolution module ([T, B, D] -> same) with the padding zeroed after its gated
    pointwise convolution, before the depthwise one."""
    pointwise, glu, *rest = module.sequential
    y = glu(pointwise(module.layer_norm(x.transpose(0, 1)).transpose(1, 2))) * keep  # [B, C, T]
    for m in rest:
        y = m(y)
    return y.permute(2, 0, 1)


def _spec_augment(x: torch.Tensor) -> torch.Tensor:
    """Independent frequency and time masks per utterance on normalised [B, T, F] (mask value 0)."""
    spec = x.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
    for _ in range(FREQ_MASKS):
        spec = AF.mask_along_axis_iid(spec, FREQ_MASK_BINS, 0.0, 2)
    for _ in range(TIME_MASKS):
        spec = AF.mask_along_axis_iid(spec, TIME_MASK_FRAMES, 0.0, 3, p=TIME_MASK_MAX_FRACTION)
    return spec.squeeze(1).transpose(1, 2)


class SslCtc(nn.Module):
    """Waveforms [B, N] -> CTC log-probs [B, T', vocab_size] through a wav2vec2/WavLM encoder."""

    def __init__(self, dims: SttDims):
        super().__init__()
        if dims.encoder not in SSL_ENCODERS:
            raise ValueError(f"SslCtc needs encoder in {SSL_ENCODERS}, got {dims.encoder!r}")
        self.dims = dims
        params = {
            k: (list(map(tuple, v)) if k == "extractor_conv_layer_config" and v else v) for k, v in dims.ssl.items()
        }
        factory = torchaudio.models.wav2vec2_model if dims.encoder == "wav2vec2" else torchaudio.models.wavlm_model
        self.encoder = factory(**{**params, "aux_num_out": None})
        for p in self.encoder.feature_extractor.parameters():  # the convolutional front stays as published
            p.requires_grad_(False)
        self.drop = nn.Dropout(dims.dropout)
        self.head = nn.Linear(params["encoder_embed_dim"], dims.vocab_size)
        stride = 1
        for _, _, s in params["extractor_conv_layer_config"] or [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2:
            stride *= s
        self.frame_shift_s = stride / SAMPLE_RATE  # 0.02 s for the published configurations

    def featurize(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = waveforms.float()
        if self.dims.ssl_normalize_waveform:
            mask = _length_mask(lengths.to(x.device), x.shape[1])
            n = lengths.to(x.device)[:, None].float()
            mean = (x * mask).sum(1, keepdim=True) / n
            std = ((((x - mean) * mask) ** 2).sum(1, keepdim=True) / n).sqrt().clamp_min(1e-5)
            x = (x - mean) / std * mask
        return x, lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features.ndim != 2:
            raise ValueError(f"expected waveforms [batch, samples], got {tuple(features.shape)}")
        x, out_lengths = self.encoder(features, lengths.to(features.device))
        return torch.log_softmax(self.head(self.drop(x)).float(), dim=-1), out_lengths


def build_stt_model(dims: SttDims) -> nn.Module:
    """A freshly initialised model for ``dims``."""
    return CtcConformer(dims) if dims.encoder == "conformer" else SslCtc(dims)


def save_stt_checkpoint(
    model: nn.Module,
    *,
    extra: Mapping[str, Any] | None = None,
    base_model: str = "general",
    vocabulary: Sequence[str] = (),
    half: bool = False,
    language_model: WordLM | None = None,
) -> bytes:
    """Weights + dims + vocab + base model name + domain vocabulary as ``torch.save`` bytes.

    ``half`` stores floating-point weights as float16 (half the size; loaded back as
    float32). ``extra`` must hold plain Python values. A DDP-wrapped model is unwrapped.
    """
    module = getattr(model, "module", model)
    if not isinstance(module, (CtcConformer, SslCtc)):
        raise TypeError(f"save_stt_checkpoint expects a CtcConformer or SslCtc, got {type(module).__name__}")
    state = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        state[k] = v.half() if half and v.is_floating_point() else v
    dims = asdict(module.dims)
    if dims["ssl"] is not None:
        dims["ssl"] = {
            k: ([list(c) for c in v] if k == "extractor_conv_layer_config" and v else v) for k, v in dims["ssl"].items()
        }
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "dims": dims,
        "vocab": list(VOCAB),
        "base_model": str(base_model),
        "vocabulary": [str(t) for t in vocabulary],
        "extra": dict(extra or {}),
        "model_state_dict": state,
    }
    if language_model is not None:
        checkpoint["language_model"] = language_model.to_dict()
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def load_stt_checkpoint(data: bytes, map_location: str | torch.device = "cpu") -> tuple[nn.Module, SttMeta]:
    """Rebuild the model (eval mode, float32) and its metadata from ``save_stt_checkpoint`` bytes."""
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"not a readable speech-to-text checkpoint ({len(data)} bytes): {e}") from e
    required = {"format", "dims", "vocab", "base_model", "vocabulary", "extra", "model_state_dict"}
    missing = required - set(checkpoint) if isinstance(checkpoint, dict) else required
    if missing:
        raise ValueError(f"speech-to-text checkpoint lacks {sorted(missing)}; expected keys {sorted(required)}")
    if checkpoint["format"] != CHECKPOINT_FORMAT:
        raise ValueError(
            f"speech-to-text checkpoint format {checkpoint['format']} is not supported; this version reads {CHECKPOINT_FORMAT}"
        )
    if tuple(checkpoint["vocab"]) != VOCAB:
        raise ValueError(f"checkpoint vocabulary {checkpoint['vocab']} differs from this version's {list(VOCAB)}")
    dims = SttDims(**checkpoint["dims"])
    model = build_stt_model(dims)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in checkpoint["model_state_dict"].items()}
    model.load_state_dict(state)
    model.to(map_location).eval()
    meta = SttMeta(
        dims=dims,
        vocab=tuple(checkpoint["vocab"]),
        base_model=checkpoint["base_model"],
        vocabulary=tuple(checkpoint["vocabulary"]),
        extra=checkpoint["extra"],
        language_model=WordLM.from_dict(checkpoint["language_model"]) if checkpoint.get("language_model") else None,
    )
    return model, meta


def with_language_model(data: bytes, transcripts: Sequence[str]) -> bytes:
    """``save_stt_checkpoint`` bytes with a word language model of normalised ``transcripts``
    attached (replacing any); weights, dims, vocabulary and extra unchanged."""
    model, meta = load_stt_checkpoint(data)
    return save_stt_checkpoint(
        model, extra=dict(meta.extra), base_model=meta.base_model, vocabulary=meta.vocabulary,
        language_model=build_word_lm(transcripts),
    )


# --- self-supervised encoders ----------------------------------------------------------------


def _ssl_bundle(bundle_name: str):
    bundle = getattr(torchaudio.pipelines, bundle_name, None)
    if not isinstance(bundle, torchaudio.pipelines.Wav2Vec2Bundle):
        names = sorted(
            n
            for n in dir(torchaudio.pipelines)
            if isinstance(getattr(torchaudio.pipelines, n), torchaudio.pipelines.Wav2Vec2Bundle)
        )
        raise ValueError(f"unknown self-supervised bundle {bundle_name!r}; choose one of {names}")
    return bundle


def ssl_weights_path(bundle_name: str) -> Path:
    """Where the bundle's weights must lie: $TORCH_HOME/hub/checkpoints/<file> (torch.hub's cache)."""
    bundle = _ssl_bundle(bundle_name)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(bundle._path)


def load_ssl_encoder(bundle_name: str, *, dropout: float = 0.1) -> SslCtc:
    """An :class:`SslCtc` with the published encoder weights of ``torchaudio.pipelines.<bundle_name>``
    and a fresh CTC head. Nothing is downloaded: the weights file must already be in the
    torch hub cache (:func:`ssl_weights_path`); ``FileNotFoundError`` names the path otherwise.
    """
    bundle = _ssl_bundle(bundle_name)
    path = ssl_weights_path(bundle_name)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights of {bundle_name} not found at {path}; copy {os.path.basename(bundle._path)} there "
            f"(or point TORCH_HOME at a cache that holds it): models are never downloaded at run time"
        )
    encoder = "wavlm" if bundle._model_type == "WavLM" else "wav2vec2"
    params = {k: v for k, v in bundle._params.items() if k != "aux_num_out"}
    dims = SttDims(
        encoder=encoder, ssl=params, ssl_normalize_waveform=bool(bundle._normalize_waveform), dropout=dropout
    )
    model = SslCtc(dims)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("aux.")}
        model.encoder.load_state_dict(state, strict=True)
    except Exception as e:
        raise ValueError(f"{path} does not hold the weights of {bundle_name}: {e}") from e
    return model
