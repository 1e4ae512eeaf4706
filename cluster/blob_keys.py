"""Every blob key Fathom writes, in one place: the layout of the blob store.

    datasets/<dataset>/audio/<audio>               uploaded dataset audio
    features/<dataset>/<audio>.parquet             that audio's feature shard
    inference/<job>/<file>                         audio of an inference job
    models/detectors/<model>.pt                    a trained detector
    custom_models/<model>/data/<pair>              audio of a custom model's data pair
    custom_models/<model>/checkpoints/run-<n>.pt   that model's checkpoint of run n
    ray-train/<run>                                Ray Train storage of one training run

Deleting a dataset removes its ``datasets/`` prefix and its feature shards; deleting a custom
model removes its whole prefix.
"""

from __future__ import annotations

CUSTOM_MODELS_PREFIX = "custom_models/"  # the only objects a transcription request may name


def dataset_prefix(dataset_id: str) -> str:
    """Prefix of every uploaded object of one dataset."""
    return f"datasets/{dataset_id}/"


def dataset_audio_key(dataset_id: str, audio_id: str) -> str:
    return f"{dataset_prefix(dataset_id)}audio/{audio_id}"


def features_key(dataset_id: str, audio_id: str) -> str:
    """Key of an audio file's feature shard."""
    return f"features/{dataset_id}/{audio_id}.parquet"


def inference_audio_key(job_id: str, file_id: str) -> str:
    return f"inference/{job_id}/{file_id}"


PEAKS_ROOT, SPECTROGRAMS_ROOT = "peaks/", "spectrograms/"


def peaks_key(audio_key: str) -> str:
    """Waveform peaks of the audio stored under ``audio_key`` (``data_pipelines.peaks``), kept beside it."""
    return f"{PEAKS_ROOT}{audio_key}.npy"


def spectrogram_key(audio_key: str) -> str:
    """Log-mel bands of the audio stored under ``audio_key`` (``data_pipelines.spectrogram``), kept beside it."""
    return f"{SPECTROGRAMS_ROOT}{audio_key}.npz"


def view_keys(audio_key: str) -> list[str]:
    """Every page view kept for the audio under ``audio_key``."""
    return [peaks_key(audio_key), spectrogram_key(audio_key)]


def view_prefixes(audio_prefix: str) -> list[str]:
    """The prefixes holding the page views of all audio under ``audio_prefix``."""
    return [PEAKS_ROOT + audio_prefix, SPECTROGRAMS_ROOT + audio_prefix]


def detector_checkpoint_key(model_id: str) -> str:
    return f"models/detectors/{model_id}.pt"


def custom_model_prefix(model_id: int) -> str:
    """Prefix of every object of one custom model (audio and checkpoints)."""
    return f"{CUSTOM_MODELS_PREFIX}{model_id}/"


def pair_audio_key(model_id: int, pair_id: int) -> str:
    return f"{custom_model_prefix(model_id)}data/{pair_id}"


def custom_checkpoint_key(model_id: int, run: int) -> str:
    """A fresh key per run, so servers caching by key never serve a stale model."""
    return f"{custom_model_prefix(model_id)}checkpoints/run-{run}.pt"


def training_storage_key(run_name: str) -> str:
    """Where Ray Train keeps a run's checkpoints (``BlobStore.arrow_path`` of this)."""
    return f"ray-train/{run_name}"
