"""Dataset preprocessing on a real Ray cluster, metadata database and local blob store.

Uploads in every common format and rate (plus a corrupt and an empty one) go through one
Ray Data run; good files must come out ``ready`` with their true duration, rate, channels
and a feature shard of the right length, bad files ``failed`` with a reason, and training's
reader (``read_feature_dataset``) must see the same features.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest

from cluster.blob_keys import features_key
from cluster.blob_signing import BlobNotFound
from cluster.blobs import make_blob_store
from cluster.db import init_schema, session_scope
from cluster.tables import AudioFile, Dataset, Organization, utcnow
from data_pipelines.audio import encode_audio
from data_pipelines.features import FRAME_HOP_MS, N_FEATURES
from data_pipelines.preprocess import FAILED, READY, SKIPPED, preprocess_audio_files
from data_pipelines.shards import (
    ShardFormatError,
    encode_feature_shard,
    read_feature_dataset,
    read_feature_shard,
    row_to_features,
    write_feature_shard,
)
from schemas.settings import Settings

DURATION_TOLERANCE_MS = 20


@dataclass(frozen=True)
class Upload:
    name: str
    fmt: str
    sample_rate: int  # Hz
    channels: int
    seconds: float


GOOD = (
    Upload("speech.wav", "wav", 22_050, 2, 2.30),
    Upload("take.flac", "flac", 44_100, 1, 1.70),
    Upload("podcast.mp3", "mp3", 48_000, 2, 2.10),
    Upload("phone.ogg", "ogg", 8_000, 1, 1.35),
    Upload("memo.m4a", "m4a", 32_000, 2, 1.90),
)


def _signal(spec: Upload, seed: int) -> np.ndarray:
    """A tone plus noise, [n, channels], so lossy codecs have something to keep."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(spec.seconds * spec.sample_rate)) / spec.sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    return np.stack([tone + 0.05 * rng.standard_normal(t.size) for _ in range(spec.channels)], axis=1)


@pytest.fixture
def env(tmp_path, database_url):
    settings = Settings(data_dir=tmp_path, database_url=database_url, blob_root=tmp_path / "blobs")
    secret = init_schema(database_url).signing_secret.encode()
    blobs = make_blob_store(settings, secret=secret)
    with session_scope(database_url) as s:
        org = Organization(name=f"org-{uuid.uuid4().hex[:6]}")
        s.add(org)
        s.flush()
        dataset = Dataset(organization_id=org.id, name="uploads")
        s.add(dataset)
        s.flush()
        ids = (org.id, dataset.id)
    return settings, blobs, ids


def _add_file(
    settings: Settings, blobs, ids: tuple[str, str], name: str, data: bytes, *, status: str = "normalizing", store: bool = True
) -> str:
    org_id, dataset_id = ids
    file_id = str(uuid.uuid4())
    key = f"datasets/{dataset_id}/audio/{file_id}/{name}"
    if store:
        blobs.put_bytes(key, data)
    with session_scope(settings.database_url) as s:
        s.add(
            AudioFile(
                id=file_id, organization_id=org_id, dataset_id=dataset_id, original_filename=name,
                content_type="application/octet-stream", declared_size=len(data), blob_key=key,
                processing_status=status, attempts=1, lease_until=utcnow() + timedelta(seconds=120),
            )
        )
    return file_id


def _load(settings: Settings, file_id: str) -> AudioFile:
    with session_scope(settings.database_url) as s:
        row = s.get(AudioFile, file_id)
        s.expunge(row)
        return row


def test_preprocess_mixed_uploads(ray_cluster, env):
    settings, blobs, ids = env
    good = {
        _add_file(settings, blobs, ids, u.name, encode_audio(_signal(u, i), u.sample_rate, u.fmt)): u
        for i, u in enumerate(GOOD)
    }
    corrupt = _add_file(settings, blobs, ids, "broken.wav", b"RIFF\x10\x00\x00\x00not audio at all" * 40)
    empty = _add_file(settings, blobs, ids, "empty.mp3", b"")
    lost = _add_file(settings, blobs, ids, "lost.flac", b"never stored", store=False)
    settled = _add_file(settings, blobs, ids, "done.wav", encode_audio(_signal(GOOD[0], 9), 22_050, "wav"), status="ready")
    deleted = str(uuid.uuid4())  # removed from the dataset before the run started

    results = preprocess_audio_files(settings, [*good, corrupt, empty, lost, settled, deleted])

    assert results == {
        **{f: READY for f in good}, corrupt: FAILED, empty: FAILED, lost: FAILED, settled: SKIPPED, deleted: SKIPPED
    }
    shards = {}
    for file_id, spec in good.items():
        row = _load(settings, file_id)
        assert row.processing_status == READY, (spec.name, row.error_message)
        assert abs(row.duration_ms - spec.seconds * 1000) <= DURATION_TOLERANCE_MS, (spec.name, row.duration_ms)
        assert (row.sample_rate, row.channels) == (spec.sample_rate, spec.channels), spec.name
        assert row.features_key == features_key(ids[1], file_id)
        assert row.error_message is None and row.lease_until is None
        features = read_feature_shard(blobs, row.features_key)
        assert features.shape[1] == N_FEATURES and features.dtype == np.float32
        assert abs(features.shape[0] - row.duration_ms / FRAME_HOP_MS) <= 1, (spec.name, features.shape)
        assert np.isfinite(features).all()
        shards[file_id] = features

    broken, nothing, missing = _load(settings, corrupt), _load(settings, empty), _load(settings, lost)
    assert broken.processing_status == FAILED and broken.lease_until is None and broken.features_key is None
    assert "corrupt" in broken.error_message or "unsupported" in broken.error_message, broken.error_message
    assert nothing.processing_status == FAILED and "empty" in nothing.error_message, nothing.error_message
    assert missing.processing_status == FAILED and "missing from storage" in missing.error_message
    for file_id in (corrupt, empty, lost):
        with pytest.raises(BlobNotFound):
            blobs.get_bytes(features_key(ids[1], file_id))
    untouched = _load(settings, settled)
    assert untouched.features_key is None and untouched.duration_ms is None and untouched.lease_until is not None

    rows = read_feature_dataset(blobs, [features_key(ids[1], f) for f in good]).take_all()
    read_back = dict(row_to_features(r) for r in rows)
    assert read_back.keys() == shards.keys()
    for file_id, features in shards.items():
        np.testing.assert_array_equal(read_back[file_id], features)


def test_preprocess_skips_files_not_in_progress(ray_cluster, env):
    settings, blobs, ids = env
    spec = GOOD[1]
    failed_before = _add_file(settings, blobs, ids, spec.name, encode_audio(_signal(spec, 1), spec.sample_rate, "flac"), status="failed")

    assert preprocess_audio_files(settings, [failed_before]) == {failed_before: SKIPPED}
    assert _load(settings, failed_before).processing_status == "failed"
    with pytest.raises(BlobNotFound):
        blobs.get_bytes(features_key(ids[1], failed_before))


def test_feature_shard_round_trip_and_validation(tmp_path):
    blobs = make_blob_store(Settings(data_dir=tmp_path), secret=b"s" * 32)
    features = np.arange(7 * N_FEATURES, dtype=np.float32).reshape(7, N_FEATURES)
    key = features_key("ds", "a1")
    write_feature_shard(blobs, key, "a1", features)
    np.testing.assert_array_equal(read_feature_shard(blobs, key), features)

    row = pq.read_table(io.BytesIO(encode_feature_shard("a1", features))).to_pylist()[0]
    assert (row["n_frames"], row["n_features"], row["frame_hop_ms"]) == (7, N_FEATURES, FRAME_HOP_MS)
    with pytest.raises(ShardFormatError, match="feature bytes"):
        row_to_features({**row, "features": row["features"][:-4]})
    with pytest.raises(ShardFormatError, match="2-D"):
        encode_feature_shard("a1", features.reshape(-1))
    blobs.put_bytes(key, b"PAR1 not parquet")
    with pytest.raises(ShardFormatError, match="Parquet"):
        read_feature_shard(blobs, key)
