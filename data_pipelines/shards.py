"""The feature shard format: one Parquet file per preprocessed audio file.

A shard lives at blob key ``features/{dataset_id}/{audio_id}.parquet`` and holds one row:

=============  ========  =====================================================
column         type      meaning
=============  ========  =====================================================
audio_id       string    the AudioFile id
n_frames       int32     T, frames along time (one per ``frame_hop_ms``)
n_features     int32     N, values per frame
frame_hop_ms   int16     frame hop in milliseconds
features       binary    float32, C order, shape [T, N]
=============  ========  =====================================================

Preprocessing writes shards with ``write_feature_shard``: the clean features of the file as
uploaded, in the current feature set. ``read_feature_dataset`` (Ray Data) and
``row_to_features`` read many at once. Detector training does not read them: it hears each
file under new recording conditions every epoch, so it decodes the uploaded audio and
computes features itself (``train_jobs.detector_data``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipelines.features import FRAME_HOP_MS

if TYPE_CHECKING:
    import ray.data

    from cluster.blob_store import BlobStore

SHARD_SCHEMA = pa.schema(
    [
        ("audio_id", pa.string()),
        ("n_frames", pa.int32()),
        ("n_features", pa.int32()),
        ("frame_hop_ms", pa.int16()),
        ("features", pa.binary()),
    ]
)
FEATURE_DTYPE = np.dtype("<f4")  # little-endian float32 on disk, whatever the host


class ShardFormatError(ValueError):
    """A feature shard (or a row read from one) does not match the shard format."""


def encode_feature_shard(audio_id: str, features: np.ndarray) -> bytes:
    """Serialize ``features`` (float32-convertible [T, N]) as a one-row Parquet file."""
    if features.ndim != 2:
        raise ShardFormatError(f"features must be 2-D [n_frames, n_features], got shape {features.shape}")
    data = np.ascontiguousarray(features, dtype=FEATURE_DTYPE)
    n_frames, n_features = data.shape
    table = pa.Table.from_pydict(
        {
            "audio_id": [audio_id],
            "n_frames": [n_frames],
            "n_features": [n_features],
            "frame_hop_ms": [FRAME_HOP_MS],
            "features": [data.tobytes()],
        },
        schema=SHARD_SCHEMA,
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_feature_shard(blobs: BlobStore, key: str, audio_id: str, features: np.ndarray) -> None:
    """Store one file's features under ``key``; readers see the old shard or the new one, never half."""
    blobs.put_bytes(key, encode_feature_shard(audio_id, features))


def decode_feature_shard(data: bytes) -> tuple[str, np.ndarray]:
    """Parse a shard file's bytes into ``(audio_id, float32 [T, N])``."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as e:
        raise ShardFormatError(f"not a readable Parquet feature shard: {e}") from e
    if table.num_rows != 1:
        raise ShardFormatError(f"a feature shard holds exactly one row, this one has {table.num_rows}")
    return row_to_features(table.to_pylist()[0])


def read_feature_shard(blobs: BlobStore, key: str) -> np.ndarray:
    """One file's features, float32 [T, N]; raises BlobNotFound or ShardFormatError."""
    return decode_feature_shard(blobs.get_bytes(key))[1]


def row_to_features(row: Mapping[str, Any]) -> tuple[str, np.ndarray]:
    """``(audio_id, float32 [T, N])`` from one shard row (a dict, as Ray Data yields them).

    The array is a read-only view of the row's bytes; copy it before writing into it.
    """
    missing = [name for name in SHARD_SCHEMA.names if name not in row]
    if missing:
        raise ShardFormatError(f"feature row lacks column(s) {missing}; expected {SHARD_SCHEMA.names}")
    n_frames, n_features = int(row["n_frames"]), int(row["n_features"])
    if int(row["frame_hop_ms"]) != FRAME_HOP_MS:
        raise ShardFormatError(
            f"shard of {row['audio_id']!r} has frame_hop_ms={row['frame_hop_ms']}, this build uses {FRAME_HOP_MS}; "
            "preprocess the file again"
        )
    raw = row["features"]
    expected = n_frames * n_features * FEATURE_DTYPE.itemsize
    if len(raw) != expected:
        raise ShardFormatError(
            f"shard of {row['audio_id']!r} holds {len(raw)} feature bytes, "
            f"expected {expected} for [{n_frames}, {n_features}] float32"
        )
    features = np.frombuffer(raw, dtype=FEATURE_DTYPE).reshape(n_frames, n_features)
    return str(row["audio_id"]), features


def read_feature_dataset(blobs: BlobStore, keys: Sequence[str]) -> ray.data.Dataset:
    """A Ray Dataset with one row per shard in ``keys`` (columns as in ``SHARD_SCHEMA``)."""
    import ray.data

    if not keys:
        raise ValueError("read_feature_dataset needs at least one shard key")
    return ray.data.read_parquet(
        [blobs.arrow_path(k) for k in keys],
        filesystem=blobs.arrow_filesystem(),
        partitioning=None,
    )
