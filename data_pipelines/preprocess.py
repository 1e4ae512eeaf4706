"""Dataset audio preprocessing: one Ray Data run turns a group of uploads into feature shards.

Per file: read the blob, decode + downmix + resample to 16 kHz (status ``normalizing``),
record duration / source rate / channels and move to ``embedding``, compute features, write
the shard (``data_pipelines.shards``) and move to ``ready``. A file that cannot be read or
decoded becomes ``failed`` with a message saying why; it never fails the run or other files.
A blob store outage is not the file's fault: such a file keeps its claim and is retried when
the caller's lease runs out (``max_attempts`` bounds that).

Every database write is a short conditional UPDATE guarded by the file's current status, so
a file deleted or settled elsewhere meanwhile is skipped without error. Claims and leases
belong to the caller (``cluster.queue``); this module only clears ``lease_until`` when a file
reaches ``ready`` or ``failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select, update

from cluster.blob_keys import features_key
from cluster.blob_signing import BlobError, BlobNotFound
from cluster.blob_store import BlobStore
from cluster.blobs import make_blob_store
from cluster.db import session_scope, signing_secret
from cluster.tables import AudioFile
from data_pipelines.audio import AudioDecodeError, decode_audio
from data_pipelines.features import compute_features
from data_pipelines.shards import write_feature_shard
from data_pipelines.views import store_views

if TYPE_CHECKING:
    from ray.data import DataContext

    from schemas.settings import Settings

logger = logging.getLogger(__name__)

NORMALIZING, EMBEDDING, READY, FAILED = "normalizing", "embedding", "ready", "failed"
SKIPPED = "skipped"  # result only: the file was deleted or left these states meanwhile
RETRY = "retry"  # result only: the blob store failed; the file stays claimed until its lease ends
IN_PROGRESS = (NORMALIZING, EMBEDDING)

TASK_NUM_CPUS = 1  # CPUs per Data map task; torch intra-op threads are pinned to the same
BLOCKS_PER_CPU = 2  # input blocks per cluster CPU: small groups still spread over every core
MAX_ERROR_CHARS = 2000  # error_message is free text; keep tracebacks' tails out of the table

_STORES: dict[tuple[Any, ...], BlobStore] = {}  # per worker process: one client per store config


def preprocess_audio_files(settings: Settings, file_ids: Sequence[str]) -> dict[str, str]:
    """Preprocess ``file_ids`` in one Ray Data run; returns file id -> READY/FAILED/SKIPPED/RETRY.

    Must run where Ray is initialised; when it runs inside a Ray task, start that task with
    ``num_cpus=0`` so the Data tasks get the cluster's CPUs. Infrastructure errors (database
    or Ray unreachable) propagate; the caller's lease brings the files back later.
    """
    import ray

    url = settings.database_url
    with session_scope(url) as s:
        rows = s.execute(
            select(AudioFile.id, AudioFile.blob_key, AudioFile.dataset_id).where(
                AudioFile.id.in_(list(file_ids)), AudioFile.processing_status.in_(IN_PROGRESS)
            )
        ).all()
    results = {file_id: SKIPPED for file_id in file_ids}
    if not rows:
        return results
    items = [{"id": i, "blob_key": b, "dataset_id": d} for i, b, d in rows]

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    stage_kwargs = {"settings": settings, "secret": signing_secret(url)}
    ds = (
        ray.data.from_items(items, override_num_blocks=min(len(items), BLOCKS_PER_CPU * cpus))
        .map(_normalize_task, fn_kwargs=stage_kwargs, num_cpus=TASK_NUM_CPUS)
        .map(_embed_task, fn_kwargs=stage_kwargs, num_cpus=TASK_NUM_CPUS)
    )
    _configure(ds.context)
    for row in ds.iter_rows():
        results[row["id"]] = row["status"]
    counts = {s: sum(1 for v in results.values() if v == s) for s in (READY, FAILED, SKIPPED, RETRY)}
    logger.info("preprocessed %d audio files: %s", len(results), counts)
    return results


# --- per-file stages: Data map functions, also callable in a plain loop --------------------------


def normalize_row(row: dict[str, Any], *, settings: Settings, secret: bytes) -> dict[str, Any]:
    """Read + decode one file and record its metadata (-> ``embedding``), or fail it.

    In: ``{id, blob_key, dataset_id}``. Out: ``{id, dataset_id, status, waveform}``;
    ``waveform`` is float32 mono 16 kHz [n] when ``status`` is ``embedding``, else empty.
    ``secret`` is the instance's blob signing secret.
    """
    file_id = row["id"]
    out = {"id": file_id, "dataset_id": row["dataset_id"], "blob_key": row["blob_key"], "status": FAILED,
           "waveform": np.zeros(0, np.float32)}
    try:
        data = worker_blob_store(settings, secret).get_bytes(row["blob_key"])
        decoded = decode_audio(data, max_seconds=settings.max_audio_seconds)
    except BlobError as e:
        if not isinstance(e, BlobNotFound):
            out["status"] = _retry_later(file_id, e)
            return out
        out["status"] = _fail(settings.database_url, file_id, f"the uploaded audio is missing from storage ({e})")
        return out
    except Exception as e:  # one bad file never stops the run
        out["status"] = _fail(settings.database_url, file_id, _describe(e, "reading the upload"))
        return out
    moved = _transition(
        settings.database_url, file_id, IN_PROGRESS,
        processing_status=EMBEDDING, duration_ms=decoded.duration_ms,
        sample_rate=decoded.source_sample_rate, channels=decoded.source_channels, error_message=None,
    )
    if moved:
        out["status"], out["waveform"] = EMBEDDING, decoded.waveform
    else:
        out["status"] = SKIPPED
    return out


def embed_row(row: dict[str, Any], *, settings: Settings, secret: bytes) -> dict[str, Any]:
    """Compute features, write the shard and the page's views, and mark the file ``ready`` (or ``failed``).

    In: ``normalize_row``'s output. Out: ``{id, status}``.
    """
    file_id = row["id"]
    if row["status"] != EMBEDDING:
        return {"id": file_id, "status": row["status"]}
    url = settings.database_url
    key = features_key(row["dataset_id"], file_id)
    blobs = worker_blob_store(settings, secret)
    try:
        wave = np.asarray(row["waveform"], dtype=np.float32)
        features = compute_features(wave)
        write_feature_shard(blobs, key, file_id, features)
        store_views(blobs, row["blob_key"], wave, features)  # what the annotation editor draws
    except BlobError as e:
        return {"id": file_id, "status": _retry_later(file_id, e)}
    except Exception as e:
        return {"id": file_id, "status": _fail(url, file_id, _describe(e, "computing features"))}
    if _transition(url, file_id, (EMBEDDING,), processing_status=READY, features_key=key, lease_until=None):
        return {"id": file_id, "status": READY}
    blobs.delete(key)  # the file went away while we worked: leave no orphan shard
    return {"id": file_id, "status": SKIPPED}


def _normalize_task(row: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    pin_threads()
    return normalize_row(row, **kwargs)


def _embed_task(row: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    pin_threads()
    return embed_row(row, **kwargs)


# --- helpers --------------------------------------------------------------------------------------


def _configure(ctx: DataContext) -> None:
    """Settings for this run only (``ds.context`` is the dataset's own copy of the process default).

    The two maps fuse into one operator, so per-operator resource reservation has nothing to
    balance; with it on, Ray Data 2.60 held this operator near one running task on a 2-CPU
    node (half the node reserved to it, the shared half barely used). Off, it runs one task
    per CPU.
    """
    ctx.enable_progress_bars = False
    ctx.op_resource_reservation_enabled = False


def _transition(url: str, file_id: str, from_states: Sequence[str], **values: Any) -> bool:
    """One conditional UPDATE; False when the file is gone or no longer in ``from_states``."""
    with session_scope(url) as s:
        result = s.execute(
            update(AudioFile)
            .where(AudioFile.id == file_id, AudioFile.processing_status.in_(tuple(from_states)))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return result.rowcount > 0


def _fail(url: str, file_id: str, message: str) -> str:
    logger.warning("audio file %s failed preprocessing: %s", file_id, message)
    failed = _transition(
        url, file_id, IN_PROGRESS, processing_status=FAILED, error_message=message[:MAX_ERROR_CHARS], lease_until=None
    )
    return FAILED if failed else SKIPPED


def _retry_later(file_id: str, error: BlobError) -> str:
    logger.warning("audio file %s left for a retry: blob store error: %s", file_id, error)
    return RETRY


def _describe(error: Exception, doing: str) -> str:
    """The user-facing reason: decode errors speak for themselves, others name the step and type."""
    if isinstance(error, AudioDecodeError):
        return str(error)
    return f"{doing} failed: {type(error).__name__}: {error}"


def worker_blob_store(settings: Settings, secret: bytes) -> BlobStore:
    """The worker process's store for these settings (S3 clients are costly to build per row)."""
    key = (tuple(sorted(settings.to_env().items())), secret)
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = make_blob_store(settings, secret=secret)
    return store


def pin_threads() -> None:
    """Match torch's intra-op threads to the task's CPUs: N tasks x M threads would oversubscribe."""
    import torch

    if torch.get_num_threads() != TASK_NUM_CPUS:
        torch.set_num_threads(TASK_NUM_CPUS)
