"""What a detector trains on: the uploaded files, augmented afresh every epoch.

The driver hands Ray Train datasets of file rows (``file_rows``: id, blob key, events);
Ray Data splits them among the workers, and each worker reads and decodes its share
(``BlobAudio``, ``with_audio``) on its first pass, which also sums the clean features'
statistics and the label counts (``first_read_sums``), and turns its validation files into
clean windows (``validation_batches``); both are kept in memory for later epochs
(``train_jobs.shards.MemoryShard``). Every epoch a worker then, per training file, draws recording
conditions (``augment_file``), computes features with the one feature function serving
uses, and cuts labelled windows on a grid shifted by a random part of the stride
(``training_batches``). Nothing is decoded before the workers start. A file's draws are a function of (seed, epoch, file id) only: the same job reproduces it on any worker, in
any order, and every epoch hears each file under a new room, line and codec.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from data_pipelines import condition_chain as CC
from data_pipelines.audio import SAMPLE_RATE, decode_audio
from data_pipelines.augment import stable_id, utterance_seed
from data_pipelines.events import Event
from data_pipelines.features import compute_features, feature_count, frame_count
from data_pipelines.preprocess import worker_blob_store
from train_jobs.windows import PAD_VALUE, WindowSpec, frame_labels, make_training_windows

log = logging.getLogger("fathom.train.detector")

SHUFFLE_FILES = 8  # windows of this many files are shuffled together into batches
def file_rng(seed: int, epoch: int, file_id: str, stream: int = 0) -> np.random.Generator:
    """The generator of one file's draw in one epoch (``stream`` 0: conditions, 1: window grid, 2: whether to
    augment), the same on every worker."""
    return np.random.default_rng(utterance_seed(seed, epoch, stable_id(file_id), stream))


def augment_file(
    wave: np.ndarray, conditions: CC.Conditions, *, seed: int, epoch: int, file_id: str
) -> tuple[np.ndarray, list[dict]]:
    """``wave`` under this epoch's draw of ``conditions``, same length; and what was applied."""
    y, applied = CC.apply_conditions(
        wave, SAMPLE_RATE, conditions, file_rng(seed, epoch, file_id), families=CC.CHANNEL_FAMILIES
    )
    n = wave.size
    y = y[:n] if y.size >= n else np.pad(y, (0, n - y.size))  # resampling round trips may differ by a sample
    return np.ascontiguousarray(y, dtype=np.float32), applied


def events_json(events: Sequence[Event]) -> str:
    return json.dumps([[e.artifact_type, int(e.start_ms), int(e.end_ms)] for e in events])


def events_of(row_events: str) -> list[Event]:
    return [Event(t, s, e) for t, s, e in json.loads(row_events)]


@dataclass(frozen=True)
class BlobAudio:
    """Reads an uploaded file from the blob store and decodes it (16 kHz float32 mono), in whichever
    worker trains on it: a job starts training with nothing decoded, each rank reading its own share."""

    settings: Any
    secret: bytes

    def __call__(self, blob_key: str) -> np.ndarray:
        data = worker_blob_store(self.settings, self.secret).get_bytes(blob_key)
        return decode_audio(data, max_seconds=self.settings.max_audio_seconds).waveform.astype(np.float32)


def file_rows(files: Sequence[tuple[str, str, Sequence[Event]]]) -> list[dict[str, str]]:
    """Dataset rows {"audio_id", "blob_key", "events" JSON} of (id, blob key, events)."""
    return [{"audio_id": a, "blob_key": k, "events": events_json(ev)} for a, k, ev in files]


def with_audio(rows: Iterable[dict[str, Any]], read: Callable[[str], np.ndarray] | None) -> Iterator[dict[str, Any]]:
    """Rows {"audio_id", "waveform", "events"}: a row's own waveform, or its blob read by ``read``. A file
    deleted or unreadable since preprocessing is skipped with a warning: training goes on with the others."""
    for row in rows:
        if "waveform" in row:
            yield row
            continue
        if read is None:
            raise ValueError(f"row {row.get('audio_id')} has neither a waveform nor an audio reader to read its blob_key")
        try:
            wave = read(row["blob_key"])
        except Exception as e:
            log.warning("training file %s skipped: %s: %s", row["audio_id"], type(e).__name__, e)
            continue
        yield {"audio_id": row["audio_id"], "waveform": wave, "events": row["events"]}


def file_windows(
    wave: np.ndarray,
    events: Sequence[Event],
    *,
    artifact_types: Sequence[str],
    spec: WindowSpec,
    feature_version: int,
    grid_offset: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Labelled windows of one file; ``grid_offset`` frames of padding first shift the window grid."""
    feats = compute_features(wave, version=feature_version)
    labels = frame_labels(feats.shape[0], events, artifact_types)
    if grid_offset:
        feats = np.concatenate([np.full((grid_offset, feats.shape[1]), PAD_VALUE, np.float32), feats])
        labels = np.concatenate([np.full((grid_offset, labels.shape[1]), PAD_VALUE, np.float32), labels])
    return make_training_windows(feats, labels, spec)


def validation_batches(
    rows: Iterable[dict[str, Any]], *, batch_size: int, artifact_types: Sequence[str], spec: WindowSpec,
    feature_version: int, device: torch.device,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches {"x", "y"} of the clean windows of ``rows`` (files with their waveform), in file order."""
    pending: list[dict[str, np.ndarray]] = []
    for row in rows:
        pending.extend(
            file_windows(
                np.asarray(row["waveform"], np.float32), events_of(row["events"]),
                artifact_types=artifact_types, spec=spec, feature_version=feature_version,
            )
        )
        while len(pending) >= batch_size:
            group, pending = pending[:batch_size], pending[batch_size:]
            yield {k: torch.from_numpy(np.stack([w[k] for w in group])).to(device) for k in ("x", "y")}
    if pending:
        yield {k: torch.from_numpy(np.stack([w[k] for w in pending])).to(device) for k in ("x", "y")}


def training_batches(
    shard,
    *,
    epoch: int,
    seed: int,
    rank: int,
    batch_size: int,
    artifact_types: Sequence[str],
    spec: WindowSpec,
    feature_version: int,
    conditions: CC.Conditions | None,
    device: torch.device,
    augment_probability: float = 1.0,
) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled batches {"x": [B, W, F], "y": [B, chunk, C]} of this epoch's (augmented) files."""
    order = np.random.default_rng(np.random.SeedSequence([seed, epoch, rank, 0x5EED]))
    pending: list[dict[str, np.ndarray]] = []

    def flush(final: bool) -> Iterator[dict[str, torch.Tensor]]:
        nonlocal pending
        order.shuffle(pending)
        cut = len(pending) if final else len(pending) - len(pending) % batch_size
        for i in range(0, cut, batch_size):
            group = pending[i : i + batch_size]
            yield {k: torch.from_numpy(np.stack([w[k] for w in group])).to(device) for k in ("x", "y")}
        pending = pending[cut:]

    files = 0
    for row in shard.iter_rows():
        wave = np.asarray(row["waveform"], np.float32)
        if conditions is not None and file_rng(seed, epoch, row["audio_id"], stream=2).random() < augment_probability:
            wave, _ = augment_file(wave, conditions, seed=seed, epoch=epoch, file_id=row["audio_id"])
        offset = int(file_rng(seed, epoch, row["audio_id"], stream=1).integers(spec.stride_frames))
        pending.extend(
            file_windows(
                wave, events_of(row["events"]), artifact_types=artifact_types, spec=spec,
                feature_version=feature_version, grid_offset=offset,
            )
        )
        files += 1
        if files % SHUFFLE_FILES == 0:
            yield from flush(final=False)
    yield from flush(final=True)


def first_read_sums(shard, artifact_types: Sequence[str], feature_version: int) -> tuple[np.ndarray, np.ndarray]:
    """Over the files of ``shard`` as uploaded: [positive frames, labelled frames] per class (float64 [2, C]),
    and [sum, sum of squares] per feature with the frame count in column 0 of a third row (float64 [3, F])."""
    counts = np.zeros((2, len(artifact_types)))
    sums = np.zeros((3, feature_count(feature_version)))  # zeros from a rank without files: all-reduced alike
    for row in shard.iter_rows():
        feats = compute_features(np.asarray(row["waveform"], np.float32), version=feature_version).astype(np.float64)
        sums[0] += feats.sum(0)
        sums[1] += (feats * feats).sum(0)
        sums[2, 0] += feats.shape[0]
        n = frame_count(np.asarray(row["waveform"]).size)
        counts[0] += frame_labels(n, events_of(row["events"]), artifact_types).sum(0)
        counts[1] += n
    return counts, sums
