"""A custom speech model's data as its training workers read it.

The driver splits the uploaded pairs (``split_pairs``) and hands Ray Train datasets of pair
rows (``pair_rows``: blob key and transcript); each training worker reads and decodes its own
share on its first pass (``PairAudio``: any supported format and rate, downmixed and resampled
to 16 kHz) and keeps it in memory for later epochs (train_jobs.stt_loop). Nothing is decoded
before the workers start, so a job pays no separate preprocessing stage (worker processes
starting and importing torch) on top of training. A file that no longer decodes is skipped
with a warning in the model's training log, never failing the run on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.custom_models import DataPair, append_log
from data_pipelines.audio import decode_audio
from data_pipelines.preprocess import worker_blob_store
from schemas.settings import Settings

log = logging.getLogger("fathom.data.stt")

MAX_UTTERANCE_S = 3600.0  # decode guard; uploads were checked against the API's own limits


def pair_rows(pairs: Sequence[DataPair]) -> list[dict[str, str]]:
    """Dataset rows {"audio_key", "text", "type"} of uploaded pairs, in their order."""
    return [{"audio_key": p.audio_key, "text": p.transcript, "type": p.type} for p in pairs]


@dataclass(frozen=True)
class PairAudio:
    """Reads an uploaded pair's audio from the blob store and decodes it (16 kHz float32 mono), in
    whichever worker trains on it; None, logged in the model's training log, when it no longer decodes."""

    settings: Settings
    secret: bytes
    model_id: int

    def __call__(self, row: dict[str, Any]) -> np.ndarray | None:
        try:
            data = worker_blob_store(self.settings, self.secret).get_bytes(row["audio_key"])
            return decode_audio(data, max_seconds=MAX_UTTERANCE_S).waveform.astype(np.float32)
        except Exception as e:  # corrupt or missing file: this pair is skipped, the run goes on
            message = f"Skipped {row['type']} file {row['audio_key'].rsplit('/', 1)[-1]}: {type(e).__name__}: {e}"
            log.warning("custom model %s: %s", self.model_id, message)
            append_log(self.settings.database_url, self.model_id, message, level="warning")
            return None


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
