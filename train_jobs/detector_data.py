"""What a detector trains on: decoded training files, augmented afresh every epoch.

The driver decodes each file once with Ray Data (``audio_dataset``, materialised) and
turns the validation files into clean feature windows (``validation_windows``). Each
Ray Train worker then reads its share of the training files every epoch and, per file,
draws recording conditions (``augment_file``), computes features with the one feature
function serving uses, and cuts labelled windows on a grid shifted by a random part of the
stride (``training_batches``). A file's draws are a function of (seed, epoch, file id) only: the same job reproduces it on any worker, in
any order, and every epoch hears each file under a new room, line and codec.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from data_pipelines import condition_chain as CC
from data_pipelines.audio import SAMPLE_RATE, decode_audio
from data_pipelines.augment import stable_id, utterance_seed
from data_pipelines.events import Event
from data_pipelines.features import compute_features, frame_count
from data_pipelines.preprocess import pin_threads, worker_blob_store
from train_jobs.models.detector import feature_stats
from train_jobs.windows import PAD_VALUE, WindowSpec, frame_labels, make_training_windows

log = logging.getLogger("fathom.train.detector")

SHUFFLE_FILES = 8  # windows of this many files are shuffled together into batches
TASK_NUM_CPUS = 1
SHARD_MEMORY_BYTES = 1 << 30  # a worker keeps a dataset shard up to this size in memory between epochs


class MemoryShard:
    """A worker's share of a Ray dataset, read through Ray Data once and replayed from memory by
    later epochs while it fits in ``max_bytes``; a larger one is read afresh each time (streamed).

    Reading a shard starts a Data execution (split coordinator, tasks) every epoch; for the
    training files and validation windows of most jobs that costs more than the epoch's compute.
    Ray Data starts a split's next epoch only when every rank reads it again, so ranks must
    agree: after the first full read each calls ``settle(all_fit)`` with whether every rank's
    shard fitted (``train_jobs.detector_loop`` reduces it), and all keep theirs or all stream.
    """

    def __init__(self, read: Callable[[], Iterable[Any]], nbytes: Callable[[Any], int], max_bytes: int = SHARD_MEMORY_BYTES):
        self._read, self._nbytes, self.max_bytes = read, nbytes, max_bytes
        self._items: list[Any] | None = None
        self.streaming = False  # this rank's shard did not fit
        self.settled = False

    @property
    def read_once(self) -> bool:
        return self._items is not None or self.streaming

    def settle(self, all_fit: bool) -> None:
        if not all_fit:
            self._items, self.streaming = None, True
        self.settled = True

    def __iter__(self) -> Iterator[Any]:
        if self._items is not None and self.settled:
            yield from self._items
            return
        items: list[Any] | None = None if self.streaming or self.settled else []
        total = 0
        for item in self._read():
            if items is not None:
                total += self._nbytes(item)
                if total > self.max_bytes:
                    items, self.streaming = None, True
                else:
                    items.append(item)
            yield item
        if items is not None:
            self._items = items

    iter_rows = __iter__  # the shard interface of training_batches and label_counts


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


def _decode(row: dict[str, Any], *, settings, secret: bytes) -> list[dict[str, Any]]:
    pin_threads()
    try:
        data = worker_blob_store(settings, secret).get_bytes(row["blob_key"])
        wave = decode_audio(data, max_seconds=settings.max_audio_seconds).waveform
    except Exception as e:  # deleted or unreadable since preprocessing: train on the others
        log.warning("training file %s skipped: %s: %s", row["audio_id"], type(e).__name__, e)
        return []
    return [{"audio_id": row["audio_id"], "waveform": wave.astype(np.float32), "events": row["events"]}]


def audio_dataset(settings, secret: bytes, files: Sequence[tuple[str, str, Sequence[Event]]]):
    """Rows {"audio_id", "waveform" float32 16 kHz, "events" JSON} of (id, blob key, events), materialised."""
    import ray

    items = [{"audio_id": a, "blob_key": k, "events": events_json(ev)} for a, k, ev in files]
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return (
        ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 2 * cpus)))
        .flat_map(_decode, fn_kwargs={"settings": settings, "secret": secret}, num_cpus=TASK_NUM_CPUS)
        .materialize()
    )


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


def validation_windows(audio, *, artifact_types: Sequence[str], spec: WindowSpec, feature_version: int):
    """Clean windows {"x", "y"} of the validation files, materialised (read every epoch)."""

    def to_windows(row: dict[str, Any]) -> list[dict[str, np.ndarray]]:
        pin_threads()
        return file_windows(
            np.asarray(row["waveform"], np.float32), events_of(row["events"]),
            artifact_types=artifact_types, spec=spec, feature_version=feature_version,
        )

    return audio.flat_map(to_windows, num_cpus=TASK_NUM_CPUS).materialize()


def clean_feature_stats(audio, feature_version: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every frame of the files in ``audio`` as uploaded (featurised by Ray Data)."""

    def featurise(row: dict[str, Any]) -> dict[str, np.ndarray]:
        pin_threads()
        return {"features": compute_features(np.asarray(row["waveform"], np.float32), version=feature_version)}

    rows = audio.map(featurise, num_cpus=TASK_NUM_CPUS).iter_rows()
    return feature_stats(np.asarray(r["features"]) for r in rows)


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


def label_counts(shard, artifact_types: Sequence[str]) -> np.ndarray:
    """[positive frames, labelled frames] per class over the files of ``shard`` (float64 [2, C])."""
    counts = np.zeros((2, len(artifact_types)))
    for row in shard.iter_rows():
        n = frame_count(np.asarray(row["waveform"]).size)
        counts[0] += frame_labels(n, events_of(row["events"]), artifact_types).sum(0)
        counts[1] += n
    return counts
