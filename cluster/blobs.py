"""Fathom's blob store: audio, features and checkpoints behind one interface (cluster.blob_store), two
backends (cluster.blobs_local, cluster.blobs_s3); ``make_blob_store`` picks the one the settings name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cluster.blob_store import BlobStore
from cluster.blobs_local import LocalBlobStore

if TYPE_CHECKING:
    from schemas.settings import Settings


def make_blob_store(settings: Settings, *, secret: bytes) -> BlobStore:
    """The store ``settings.blob_backend`` names; ``secret`` signs local presigned URLs."""
    if settings.blob_backend == "local":
        assert settings.blob_root is not None  # filled by Settings
        return LocalBlobStore(settings.blob_root, secret=secret, public_url=settings.public_url)
    if settings.blob_backend == "s3":
        from cluster.blobs_s3 import S3BlobStore

        key_id, key_secret = settings.s3_access_key_id, settings.s3_secret_access_key
        return S3BlobStore(  # None credentials: boto3's and pyarrow's default chains (env, IAM role)
            bucket=settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
            access_key_id=key_id.get_secret_value() if key_id else None,
            secret_access_key=key_secret.get_secret_value() if key_secret else None,
        )
    raise ValueError(f"unknown blob_backend {settings.blob_backend!r}; expected 'local' or 's3'")
