"""Frame features for artifact detection: log-mel bands plus waveform statistics per 10 ms.

Frame ``i`` describes ``[i * 10 ms, (i + 1) * 10 ms)``: its statistics are computed over exactly
those 160 samples and its 25 ms mel window is centred on them, so a detection on frame ``i``
maps back to time without a half-window shift. Levels are absolute (no per-utterance
normalisation): clipping, dropouts and noise bursts are level phenomena.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF

from data_pipelines.audio import SAMPLE_RATE

FRAME_HOP_MS = 10
HOP_LENGTH = 160  # samples, 10 ms at SAMPLE_RATE
WIN_LENGTH = 400  # samples, 25 ms
N_FFT = 512  # samples
N_MELS = 64
F_MIN_HZ = 0.0
F_MAX_HZ = SAMPLE_RATE / 2
MEL_FLOOR = 1e-6  # power floor of log(mel + floor): about -120 dB re a full-scale tone
STAT_FLOOR = 1e-5  # amplitude floor of log statistics, -100 dBFS
# Clipping plateaus survive resampling only smeared, with ringing overshoot above the ceiling
# (~20 %), so "at the ceiling" is measured against tolerant thresholds and a robust level.
NEAR_FRAME_PEAK = 0.7  # |x| >= this * the block's peak counts as near the block's peak
CLIP_LEVEL_QUANTILE = 0.999  # the waveform's clip level: this quantile of |x|, not its peak
NEAR_CLIP_LEVEL = 0.8  # |x| >= this * clip level counts as at the clip level
DIGITAL_SILENCE = 1e-4  # |x| at or below this (-80 dBFS) counts as digital silence (dropouts)
SPECTRAL_EPS = 1e-12  # power floor inside spectral flatness
CHUNK_FRAMES = 6000  # frames per processing chunk (60 s): bounds memory on long files

# The window of frame i is centred on sample i * HOP + (HOP - 1) / 2: torch zero-pads the
# 400-sample symmetric window to N_FFT, putting its centre at N_FFT / 2 - 1 / 2.
_LEFT_PAD = N_FFT // 2 - HOP_LENGTH // 2  # samples of leading zeros

STAT_NAMES = (
    "log_rms",  # log(RMS + floor) of the 10 ms block
    "log_peak",  # log(max |x| + floor)
    "near_frame_peak",  # fraction of samples >= NEAR_FRAME_PEAK * the block's own peak
    "near_clip_level",  # fraction of samples >= NEAR_CLIP_LEVEL * the waveform's clip level
    "zero_crossing_rate",  # sign changes per sample
    "spectral_flatness",  # geometric / arithmetic mean of the 25 ms power spectrum (noise ~0.56)
    "log_max_step",  # log(max |x[n] - x[n-1]| + floor): clicks and dropout edges
    "digital_silence",  # fraction of samples with |x| <= DIGITAL_SILENCE
)
N_STATS = len(STAT_NAMES)
N_FEATURES = N_MELS + N_STATS


def frame_count(n_samples: int) -> int:
    """Frames for ``n_samples`` at SAMPLE_RATE: ceil(n / HOP_LENGTH); a partial last block counts."""
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    return -(-n_samples // HOP_LENGTH)


def compute_features(waveform: np.ndarray) -> np.ndarray:
    """Features of a mono SAMPLE_RATE waveform (full scale +-1): float32 [frame_count(n), N_FEATURES].

    Columns ``[:N_MELS]`` are log(mel power + MEL_FLOOR) of a 25 ms Hann window (HTK mel,
    0-8 kHz); columns ``[N_MELS:]`` are the statistics named in STAT_NAMES. Deterministic.
    """
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"waveform must be mono with shape [n], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or Inf")
    n_frames = frame_count(x.size)
    out = np.empty((n_frames, N_FEATURES), dtype=np.float32)
    if n_frames == 0:
        return out
    clip_level = float(np.quantile(np.abs(x), CLIP_LEVEL_QUANTILE))
    window = torch.hann_window(WIN_LENGTH, periodic=False, dtype=torch.float32)
    mel_fb = AF.melscale_fbanks(
        N_FFT // 2 + 1, F_MIN_HZ, F_MAX_HZ, N_MELS, SAMPLE_RATE, norm=None, mel_scale="htk"
    )
    with torch.inference_mode():
        for start in range(0, n_frames, CHUNK_FRAMES):
            stop = min(n_frames, start + CHUNK_FRAMES)
            _spectral(x, start, stop, window, mel_fb, out)
            _statistics(x, start, stop, clip_level, out)
    return out


def _padded(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """x[lo:hi] with zeros where the range falls outside x."""
    seg = np.zeros(hi - lo, dtype=np.float32)
    a, b = max(lo, 0), min(hi, x.size)
    if b > a:
        seg[a - lo : b - lo] = x[a:b]
    return seg


def _spectral(x: np.ndarray, start: int, stop: int, window: torch.Tensor, mel_fb: torch.Tensor, out: np.ndarray) -> None:
    seg = _padded(x, start * HOP_LENGTH - _LEFT_PAD, (stop - 1) * HOP_LENGTH + N_FFT - _LEFT_PAD)
    spec = torch.stft(
        torch.from_numpy(seg), N_FFT, HOP_LENGTH, WIN_LENGTH, window, center=False, return_complex=True
    )
    power = spec.real.square() + spec.imag.square()  # [freq, frames]
    out[start:stop, :N_MELS] = torch.log(mel_fb.T @ power + MEL_FLOOR).T.numpy()
    p = power[1:] + SPECTRAL_EPS  # DC carries no flatness information
    flatness = torch.exp(torch.log(p).mean(dim=0)) / p.mean(dim=0)
    out[start:stop, N_MELS + STAT_NAMES.index("spectral_flatness")] = flatness.numpy()


def _statistics(x: np.ndarray, start: int, stop: int, clip_level: float, out: np.ndarray) -> None:
    lo = start * HOP_LENGTH
    blocks = _padded(x, lo, stop * HOP_LENGTH).reshape(-1, HOP_LENGTH)
    prev = x[lo - 1] if lo > 0 else x[0]
    flat = blocks.reshape(-1)
    steps = np.abs(np.diff(flat, prepend=prev)).reshape(blocks.shape)
    negative = flat < 0  # not signbit: -0.0 is no crossing
    crossings = (negative != np.concatenate(([prev < 0], negative[:-1]))).reshape(blocks.shape)
    mag = np.abs(blocks)
    peak = mag.max(axis=1)
    audible = peak > DIGITAL_SILENCE
    near_frame = np.where(audible, (mag >= NEAR_FRAME_PEAK * peak[:, None]).mean(axis=1), 0.0)
    near_clip = (
        (mag >= NEAR_CLIP_LEVEL * clip_level).mean(axis=1) if clip_level > DIGITAL_SILENCE else np.zeros(len(peak))
    )
    stats = {
        "log_rms": np.log(np.sqrt(np.mean(np.square(blocks, dtype=np.float64), axis=1)) + STAT_FLOOR),
        "log_peak": np.log(peak + STAT_FLOOR),
        "near_frame_peak": near_frame,
        "near_clip_level": near_clip,
        "zero_crossing_rate": crossings.mean(axis=1),
        "log_max_step": np.log(steps.max(axis=1) + STAT_FLOOR),
        "digital_silence": (mag <= DIGITAL_SILENCE).mean(axis=1),
    }
    for name, values in stats.items():
        out[start:stop, N_MELS + STAT_NAMES.index(name)] = values


def frame_times_ms(n_frames: int) -> np.ndarray:
    """Start time (ms) of each frame: frame i covers [i * FRAME_HOP_MS, (i + 1) * FRAME_HOP_MS)."""
    return np.arange(n_frames, dtype=np.int64) * FRAME_HOP_MS

