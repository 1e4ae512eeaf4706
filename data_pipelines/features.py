"""Frame features for artifact detection: log-mel bands plus waveform statistics per 10 ms.

A 10 ms frame averages away what matters most in real recordings: a 5 ms packet-loss
dropout or a 2 ms click changes its RMS by a fraction of a dB. Feature set 2 adds
statistics of the frame's ten 1 ms sub-blocks (their quietest and loudest energy, the
steepest energy change between neighbours, the longest near-silent run relative to the
surrounding level, and how impulsive the second difference is), so such transients stay
visible at the 10 ms frame rate without a slower front end. Set 1 (the first 72 columns of
set 2) is what older models were trained on; ``compute_features(..., version=)`` serves both.

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
QUANTILE_SUBSAMPLE = 64  # every this many samples bound the clip level's search

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
SUB_BLOCK = 16  # samples, 1 ms: the resolution of the transient statistics
QUIET_RE_LOCAL_PEAK = 0.03  # |x| below this * the peak of the frame and its neighbours (-30 dB) is near-silent
TRANSIENT_NAMES = (
    "log_sub_rms_min",  # log RMS of the quietest 1 ms sub-block: dropouts inside speech
    "log_sub_rms_max",  # log RMS of the loudest 1 ms sub-block: clicks
    "sub_rms_jump",  # max |change of log sub-block RMS| between neighbouring 1 ms sub-blocks
    "quiet_run",  # longest run of near-silent samples (re the 30 ms local peak), as a fraction of the frame
    "step_peakiness",  # log(max |2nd difference|) - log(RMS of 2nd difference): impulses and edges
)
N_STATS = len(STAT_NAMES)
FEATURE_VERSIONS = {1: N_MELS + N_STATS, 2: N_MELS + N_STATS + len(TRANSIENT_NAMES)}  # version -> columns
FEATURE_VERSION = 2  # what new models are trained on
N_FEATURES = FEATURE_VERSIONS[FEATURE_VERSION]


def frame_count(n_samples: int) -> int:
    """Frames for ``n_samples`` at SAMPLE_RATE: ceil(n / HOP_LENGTH); a partial last block counts."""
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    return -(-n_samples // HOP_LENGTH)


def feature_count(version: int) -> int:
    if version not in FEATURE_VERSIONS:
        raise ValueError(f"unknown feature set {version}; this version computes {sorted(FEATURE_VERSIONS)}")
    return FEATURE_VERSIONS[version]


def compute_features(waveform: np.ndarray, version: int = FEATURE_VERSION) -> np.ndarray:
    """Features of a mono SAMPLE_RATE waveform (full scale +-1): float32 [frame_count(n), columns].

    Columns ``[:N_MELS]`` are log(mel power + MEL_FLOOR) of a 25 ms Hann window (HTK mel,
    0-8 kHz), then the statistics named in STAT_NAMES, then (set 2) TRANSIENT_NAMES.
    Deterministic; training, evaluation and serving all call this.
    """
    n_columns = feature_count(version)
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"waveform must be mono with shape [n], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or Inf")
    n_frames = frame_count(x.size)
    out = np.empty((n_frames, FEATURE_VERSIONS[2]), dtype=np.float32)
    if n_frames == 0:
        return out
    clip_level = upper_quantile(np.abs(x), CLIP_LEVEL_QUANTILE)
    window = torch.hann_window(WIN_LENGTH, periodic=False, dtype=torch.float32)
    mel_fb = AF.melscale_fbanks(
        N_FFT // 2 + 1, F_MIN_HZ, F_MAX_HZ, N_MELS, SAMPLE_RATE, norm=None, mel_scale="htk"
    )
    with torch.inference_mode():
        for start in range(0, n_frames, CHUNK_FRAMES):
            stop = min(n_frames, start + CHUNK_FRAMES)
            _spectral(x, start, stop, window, mel_fb, out)
            _statistics(x, start, stop, clip_level, out)
            _transients(x, start, stop, out)
    return out[:, :n_columns]


def upper_quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation) for q near 1, without partitioning every value.

    A bound from every QUANTILE_SUBSAMPLE-th value, well below q there, leaves about
    10 * (1 - q) of the values above it; when all the ranks at and above the quantile's are
    among them, only those are partitioned (else all are). Same value as numpy's.
    """
    n = values.size
    h = q * (n - 1)
    k = int(np.floor(h))
    lo, hi = values, (k, min(k + 1, n - 1))
    sub = values[::QUANTILE_SUBSAMPLE]
    if sub.size >= 16:
        j = int((sub.size - 1) * (1 - 10 * (1 - q)))
        bound = np.partition(sub, j)[j]
        below = np.count_nonzero(values <= bound)
        if below <= k:
            lo = values[values > bound]
            hi = (k - below, min(k + 1 - below, lo.size - 1))
    part = np.partition(lo, hi)
    a, b, t = part[hi[0]], part[hi[1]], h - k
    d = np.subtract(b, a)  # numpy's own lerp: from the nearer end
    return float(np.subtract(b, d * (1 - t)) if t >= 0.5 else np.add(a, d * t))


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


def _transients(x: np.ndarray, start: int, stop: int, out: np.ndarray) -> None:
    lo, hi = start * HOP_LENGTH, stop * HOP_LENGTH
    # one frame of real context either side: neighbour sub-blocks, the local peak and the 2nd difference
    seg = _padded(x, lo - HOP_LENGTH, hi + HOP_LENGTH)
    blocks = seg.reshape(-1, HOP_LENGTH)  # [frames + 2, HOP]
    sub = np.sqrt(np.mean(np.square(seg.reshape(-1, SUB_BLOCK), dtype=np.float64), axis=1))
    log_sub = np.log(sub + STAT_FLOOR)
    # sub-blocks outside the file take the nearest inside value: a file's start is no energy jump
    first_in, last_in = (0 - (lo - HOP_LENGTH)) // SUB_BLOCK, (x.size - 1 - (lo - HOP_LENGTH)) // SUB_BLOCK
    log_sub = log_sub[np.clip(np.arange(log_sub.size), max(first_in, 0), min(last_in, log_sub.size - 1))]
    log_sub = log_sub.reshape(len(blocks), -1)  # [frames + 2, 10]
    inner = log_sub[1:-1]
    flat = log_sub.reshape(-1)
    jumps = np.abs(np.diff(flat))  # jump k is between sub-blocks k and k + 1
    per_frame = HOP_LENGTH // SUB_BLOCK
    first = per_frame  # jumps into each inner frame's sub-blocks, from the one before it
    frame_jumps = jumps[first - 1 : first - 1 + (stop - start) * per_frame].reshape(-1, per_frame)
    peak = np.abs(blocks).max(axis=1)
    local_peak = np.maximum(np.maximum(peak[:-2], peak[1:-1]), peak[2:])
    threshold = np.maximum(QUIET_RE_LOCAL_PEAK * local_peak, DIGITAL_SILENCE)
    longest = _longest_runs(np.abs(blocks[1:-1]) <= threshold[:, None])
    d2 = np.abs(np.diff(seg, n=2))[HOP_LENGTH - 1 : HOP_LENGTH - 1 + (stop - start) * HOP_LENGTH]
    d2 = d2.reshape(-1, HOP_LENGTH)
    d2_rms = np.sqrt(np.mean(np.square(d2, dtype=np.float64), axis=1))
    stats = {
        "log_sub_rms_min": inner.min(axis=1),
        "log_sub_rms_max": inner.max(axis=1),
        "sub_rms_jump": frame_jumps.max(axis=1),
        "quiet_run": longest / HOP_LENGTH,
        "step_peakiness": np.log(d2.max(axis=1) + STAT_FLOOR) - np.log(d2_rms + STAT_FLOOR),
    }
    base = N_MELS + N_STATS
    for name, values in stats.items():
        out[start:stop, base + TRANSIENT_NAMES.index(name)] = values


def _longest_runs(flags: np.ndarray) -> np.ndarray:
    """Length of the longest run of True in each row of bool [rows, n]: int64 [rows].

    Runs are read from the edges of each row padded with False on both sides (+1 where a run
    starts, -1 one past its end), so the work goes with the number of runs, not of samples.
    """
    rows, n = flags.shape
    edges = np.zeros((rows, n + 2), np.int8)
    edges[:, 1:-1] = flags
    steps = np.diff(edges, axis=1).ravel()  # rows of n + 1
    starts, ends = np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)
    longest = np.zeros(rows, np.int64)
    if starts.size:
        row = starts // (n + 1)
        first = np.flatnonzero(np.diff(row, prepend=-1))  # each row's first run (rows ascend)
        longest[row[first]] = np.maximum.reduceat(ends - starts, first)
    return longest


def frame_times_ms(n_frames: int) -> np.ndarray:
    """Start time (ms) of each frame: frame i covers [i * FRAME_HOP_MS, (i + 1) * FRAME_HOP_MS)."""
    return np.arange(n_frames, dtype=np.int64) * FRAME_HOP_MS

