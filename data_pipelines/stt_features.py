"""Speech-to-text input features: 80-bin log-mel of 16 kHz audio, 25 ms windows every 10 ms.

Beside the detector's features (data_pipelines.features): preprocessing, training and the
CTC models (train_jobs.models.stt) all featurise through :func:`log_mel`.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torchaudio

from data_pipelines.audio import SAMPLE_RATE

N_FFT = 400  # samples: 25 ms analysis window
HOP = 160  # samples: 10 ms between log-mel frames
LOG_FLOOR = 1e-6  # mel power floor before the log (about -60 dB re a full-scale sine)


@lru_cache(maxsize=8)
def _mel(n_mels: int, device: str) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=n_mels, power=2.0
    ).to(device)


def log_mel(waveforms: torch.Tensor, lengths: torch.Tensor, n_mels: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, N] float 16 kHz waveforms + lengths [B] (samples) -> log-mel [B, T, n_mels], frames [B].

    Frame t is centred on sample t * HOP; a waveform of n samples has n // HOP + 1 frames.
    Each waveform is analysed at its own length (at least N_FFT samples), so its last frames
    reflect its own end rather than the padding of a longer one: a batch gives every waveform
    the features it has alone. Frames past a waveform's own hold the floor.
    """
    if waveforms.ndim != 2:
        raise ValueError(f"expected waveforms [batch, samples], got shape {tuple(waveforms.shape)}")
    frames = torch.div(lengths, HOP, rounding_mode="floor") + 1
    mel = _mel(n_mels, str(waveforms.device))
    with torch.no_grad():
        if len(waveforms) <= 1 or bool((lengths >= waveforms.shape[1]).all()):
            power = mel(waveforms.float())  # [B, n_mels, T]
        else:
            power = waveforms.new_full((len(waveforms), n_mels, waveforms.shape[1] // HOP + 1), LOG_FLOOR)
            for i, n in enumerate(lengths.tolist()):
                own = mel(waveforms[i : i + 1, : max(int(n), N_FFT)].float())
                k = min(own.shape[-1], power.shape[-1])
                power[i, :, :k] = own[0, :, :k]
        feats = torch.log(power.clamp_min(LOG_FLOOR)).transpose(1, 2).contiguous()
    return feats, frames
