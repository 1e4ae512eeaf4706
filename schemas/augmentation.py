"""Training-time augmentation of both model kinds: which perturbations, how likely, how strong.

``Augmentation`` is a speech-to-text model's; ``DetectorAugmentation`` an artifact detector's
(``TrainingConfig.augmentation``), built from the same families.

A fine-tuned model otherwise learns the exact voices and channel of its training files. Every
utterance is perturbed afresh in every epoch (data_pipelines.augment), in the order sound
takes: the talker (speed), the room (noise), the line (telephone band), the receiving end
(gain) and the file (lossy codec); then SpecAugment masks its log-mel features. A family set
to null never applies. Ranges are (low, high), drawn uniformly, within the documented bounds;
units are in the field names.

Babble noise is not offered: it synthesises other talkers with espeak-ng for every clip,
far too slow to run per utterance and epoch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NoiseKind = Literal["white", "pink", "room"]
CodecName = Literal["mp3", "vorbis", "opus"]
Probability = Annotated[float, Field(ge=0.0, le=1.0, description="Chance of applying, 0-1.")]


def _ordered(r: tuple[float, float]) -> tuple[float, float]:
    if r[0] > r[1]:
        raise ValueError(f"a range is (low, high) with low <= high, got {list(r)}")
    return r


def span(low: float, high: float, what: str):
    """A (low, high) range type whose ends lie in [low, high]."""
    end = Annotated[float, Field(ge=low, le=high)]
    return Annotated[
        tuple[end, end], AfterValidator(_ordered), Field(description=f"{what}: (low, high) within [{low}, {high}].")
    ]


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RoomToneAugment(_Options):
    """Stationary room noise under everything, at a level rather than an SNR (it fills pauses too)."""

    probability: Probability = 0.3
    level_dbfs: span(-90.0, -20.0, "room tone RMS in dBFS") = (-62.0, -48.0)


class NoiseAugment(_Options):
    """Additive noise at a signal-to-noise ratio measured on active speech."""

    probability: Probability = 0.3
    kinds: tuple[NoiseKind, ...] = Field(("white", "pink", "room"), min_length=1, description="Drawn uniformly.")
    snr_db: span(-5.0, 60.0, "SNR in dB") = (10.0, 30.0)


class TelephoneAugment(_Options):
    """A 300-3400 Hz telephone band, mostly through an 8 kHz round trip."""

    probability: Probability = 0.1
    narrowband_probability: Probability = 0.7  # 8 kHz resampling round trip, else the band-pass only
    mu_law_probability: Probability = 0.5  # G.711 companding, on narrowband calls


class CodecAugment(_Options):
    """An in-memory lossy encode/decode round trip at a low bitrate."""

    probability: Probability = 0.15
    codecs: tuple[CodecName, ...] = Field(("mp3", "vorbis", "opus"), min_length=1, description="Drawn uniformly.")
    mp3_kbps: span(8.0, 160.0, "mp3 bitrate in kbit/s") = (16.0, 48.0)
    vorbis_kbps: span(32.0, 70.0, "vorbis bitrate in kbit/s (libvorbis goes no lower at 16 kHz)") = (32.0, 48.0)
    opus_kbps: span(6.0, 64.0, "opus bitrate in kbit/s") = (8.0, 24.0)


class GainAugment(_Options):
    """Static gain (kept under clipping), sometimes with slow gain riding."""

    probability: Probability = 0.5
    level_db: span(-30.0, 20.0, "gain in dB") = (-12.0, 6.0)
    ride_probability: Probability = 0.3
    ride_depth_db: span(0.0, 12.0, "gain riding depth in dB, +-") = (1.0, 4.0)


class SpeedAugment(_Options):
    """Speed perturbation by resampling: tempo and pitch change together, as in Kaldi's recipes."""

    probability: Probability = 0.5
    factor: span(0.8, 1.25, "speed factor; duration is divided by it") = (0.9, 1.1)


class SpecAugmentOptions(_Options):
    """Frequency and time masks on the log-mel features (Park et al. 2019, without time warping)."""

    probability: Probability = 1.0
    freq_masks: int = Field(2, ge=0, le=8, description="Frequency masks per utterance.")
    freq_mask_bins: int = Field(15, ge=0, le=40, description="Widest frequency mask, mel bins (of 80).")
    time_masks: int = Field(4, ge=0, le=20, description="Time masks per utterance.")
    time_mask_frames: int = Field(30, ge=0, le=200, description="Widest time mask, 10 ms frames.")
    time_mask_max_fraction: float = Field(0.05, ge=0.0, le=0.2, description="A time mask covers at most this share of the frames.")


class Augmentation(_Options):
    """Augmentation of the training split (never of the evaluation split); on by default."""

    enabled: bool = Field(True, description="False: train on the clean features, exactly as without augmentation.")
    speed: SpeedAugment | None = SpeedAugment()
    noise: NoiseAugment | None = NoiseAugment()
    telephone: TelephoneAugment | None = TelephoneAugment()
    gain: GainAugment | None = GainAugment()
    codec: CodecAugment | None = CodecAugment()
    spec_augment: SpecAugmentOptions | None = SpecAugmentOptions()

    @property
    def uses_waveform(self) -> bool:
        """Whether any family works on the waveform (else features alone suffice)."""
        return self.enabled and any(getattr(self, f) is not None for f in ("speed", "noise", "telephone", "gain", "codec"))


class DetectorAugmentation(_Options):
    """Recording conditions drawn afresh for training files of an artifact detector, every epoch.

    Channel conditions only, over the whole file: annotated artifacts stay where they are,
    under the room, line, gain and codec of other recordings. Impairments (dropouts, clicks,
    clipping) are never drawn, since they would be artifacts nobody annotated, and neither is
    speed, which would move the annotations. Validation files are never augmented.
    """

    enabled: bool = Field(True, description="False: train on the files as uploaded.")
    probability: Probability = Field(
        0.5, description="Share of training files heard under drawn conditions in an epoch; the others as uploaded."
    )
    room_tone: RoomToneAugment | None = RoomToneAugment()
    noise: NoiseAugment | None = NoiseAugment(probability=0.4)
    telephone: TelephoneAugment | None = TelephoneAugment(probability=0.3)
    gain: GainAugment | None = GainAugment()
    codec: CodecAugment | None = CodecAugment(probability=0.3)
