"""Ray Data preprocessing of a custom speech model's data: decode, resample, log-mel.

A Ray Data run per split reads its uploaded pairs from the blob store, decodes them (any
supported format and rate, downmixed and resampled to 16 kHz), computes the model's log-mel
features and keeps them as float16 blocks in the object store; Ray Train then splits
that materialised dataset into one shard per worker. When training augments waveforms, the
training split keeps the decoded 16 kHz waveform instead (float16, with the pair's blob key
as its stable id), because the training loop perturbs and featurises it afresh every epoch;
the test split is always clean features. A file that no longer decodes is dropped with a
warning in the model's training log, never failing the run on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.custom_models import DataPair, append_log
from cluster.db import signing_secret
from data_pipelines.audio import decode_audio
from data_pipelines.preprocess import TASK_NUM_CPUS, pin_threads, worker_blob_store
from schemas.settings import Settings

log = logging.getLogger("fathom.data.stt")

MAX_UTTERANCE_S = 3600.0  # decode guard; uploads were checked against the API's own limits
BLOCKS_PER_CPU = 2


@dataclass(frozen=True)
class SttFeatures:
    """Materialised Ray Datasets of rows {"features" float16 [T, 80], "text"}; with waveforms,
    training rows are {"audio" float16 [n] at 16 kHz, "text", "id"}."""

    train: Any  # ray.data.Dataset
    test: Any
    train_seconds: float
    test_seconds: float
    train_rows: int
    test_rows: int
    dropped: int


def featurize_pair(
    row: dict[str, Any], *, settings: Settings, secret: bytes, model_id: int, waveform: bool = False
) -> list[dict[str, Any]]:
    """Data flat_map: one pair -> [feature row] (``waveform``: [audio row]), or [] (logged) when
    its audio no longer decodes."""
    import torch

    from data_pipelines.stt_features import log_mel

    pin_threads()
    try:
        wave = decode_audio(worker_blob_store(settings, secret).get_bytes(row["audio_key"]), max_seconds=MAX_UTTERANCE_S).waveform
    except Exception as e:  # corrupt or missing file: this pair is skipped, the run goes on
        message = f"Skipped {row['type']} file {row['audio_key'].rsplit('/', 1)[-1]}: {type(e).__name__}: {e}"
        log.warning("custom model %s: %s", model_id, message)
        append_log(settings.database_url, model_id, message, level="warning")
        return []
    out = {"text": row["text"], "seconds": wave.size / 16_000}
    if waveform:
        return [{"audio": wave.astype(np.float16), "id": row["audio_key"], **out}]
    feats, _ = log_mel(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
    return [{"features": feats[0].numpy().astype(np.float16), **out}]


def split_pairs(pairs: Sequence[DataPair], *, holdout_fraction: float, seed: int) -> tuple[list[DataPair], list[DataPair]]:
    """(train, test): the uploaded test pairs, or a seeded hold-out of the train pairs when there are none."""
    train = [p for p in pairs if p.type == "train"]
    test = [p for p in pairs if p.type == "test"]
    if test:
        return train, test
    if len(train) < 2:
        raise ValueError(f"need at least 2 training files to hold one out for evaluation, have {len(train)}")
    n_test = min(max(1, round(len(train) * holdout_fraction)), len(train) - 1)
    order = np.random.default_rng(seed).permutation(len(train))
    held = set(order[:n_test].tolist())
    return [p for i, p in enumerate(train) if i not in held], [p for i, p in enumerate(train) if i in held]


def _decode_split(settings: Settings, model_id: int, pairs: Sequence[DataPair], kind: str, *, waveform: bool):
    """(materialised rows, row count, seconds) of one split."""
    import ray

    items = [{"audio_key": p.audio_key, "text": p.transcript, "type": kind} for p in pairs]
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    ds = (
        ray.data.from_items(items, override_num_blocks=max(1, min(len(items), BLOCKS_PER_CPU * cpus)))
        .flat_map(
            featurize_pair,
            fn_kwargs={
                "settings": settings, "secret": signing_secret(settings.database_url), "model_id": model_id,
                "waveform": waveform,
            },
            num_cpus=TASK_NUM_CPUS,
        )
        .materialize()
    )
    rows = ds.count()
    seconds = float(ds.sum("seconds") or 0.0) if rows else 0.0
    columns = ["audio", "text", "id"] if waveform else ["features", "text"]
    # Materialised after the last operator: feeding Train then needs no Data tasks, so training
    # cannot stall when Serve replicas and Train workers hold every CPU of a small cluster.
    return (ds.select_columns(columns).materialize() if rows else ds), rows, seconds


def prepare_stt_features(
    settings: Settings,
    model_id: int,
    train: Sequence[DataPair],
    test: Sequence[DataPair],
    *,
    train_waveforms: bool = False,
) -> SttFeatures:
    """Decode both splits; featurise the test split, and the training split unless
    ``train_waveforms`` (Ray must be initialised)."""
    train_ds, train_rows, train_seconds = _decode_split(settings, model_id, train, "train", waveform=train_waveforms)
    test_ds, test_rows, test_seconds = _decode_split(settings, model_id, test, "test", waveform=False)
    return SttFeatures(
        train=train_ds,
        test=test_ds,
        train_seconds=train_seconds,
        test_seconds=test_seconds,
        train_rows=train_rows,
        test_rows=test_rows,
        dropped=len(train) + len(test) - train_rows - test_rows,
    )
